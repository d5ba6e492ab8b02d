"""Image sources -> ImageRef: what a vision model is sent, scaled to what it can use.

A source is a local path (PNG, JPEG, GIF, WEBP; other formats Pillow reads are converted), an
http(s) URL (sent as is: the provider fetches it), a ``data:image/...;base64`` URL, raw bytes, a
``PIL.Image.Image``, a matplotlib ``Figure`` or ``Axes``, an ``IPython.display.Image``, an
``ImageRef``, or any of these wrapped as ``ImageSource(source, detail="low")`` or as a
``(source, "low")`` pair to set the detail of one image.

Local pixels are scaled down before they are encoded to what the model works on, so no one pays
to upload pixels the provider throws away, and the ImageRef records the size actually sent so
``tokens.image_tokens`` counts exactly what the provider bills. (When the scaled image encodes
larger than the file, as sharp text in a PNG screenshot can, the file is sent instead: the
provider scales it the same way, so it costs the same tokens.) What the model uses:

* detail="low": fit in 512x512 (the low-resolution version the model sees);
* tile models (gpt-4o, gpt-4.1, o-series, unknown/local models): fit in 2048x2048, then the short
  side down to 768;
* patch models (gpt-4.1-mini/nano, o4-mini, gpt-5-mini/nano): shrink to at most 1536 32-px patches.

Formats the API does not take (BMP, TIFF, ...) become PNG; animated GIF/WEBP/PNG become their first
frame; 16-bit and CMYK pixels become 8-bit grey or RGB; a JPEG's EXIF rotation is applied when it
is re-encoded.

URL images are never fetched, so their size is unknown: ``tokens.UNKNOWN_IMAGE_SIZE`` (2048x768,
the largest tile grid any image can take) is budgeted, so trimming never under-counts them.

Limits (OpenAI's vision guide): PNG, JPEG, WEBP and non-animated GIF; 20 MB per image; 50 MB of
image bytes and 500 images per request. Every problem raises ``ImageError`` with one line, before
anything is sent. Pillow is imported only when a local image is prepared.
"""

from __future__ import annotations

import base64
import binascii
import html
import io
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from .errors import ImageError
from .messages import ImageRef
from .models import DEFAULT_IMAGE_RULE, ImageTokenRule, ModelInfo
from .tokens import data_url_size, scaled_for_area, scaled_for_high_detail, scaled_for_patches

if TYPE_CHECKING:
    from PIL import Image as PILImage

Detail = Literal["auto", "low", "high"]
DETAILS: tuple[str, ...] = ("auto", "low", "high")
MAX_IMAGE_BYTES = 20 * 1024 * 1024  # per image, decoded
MAX_REQUEST_IMAGE_BYTES = 50 * 1024 * 1024  # all images of one request, decoded
MAX_IMAGES = 500  # per request
LOW_DETAIL_SIZE = 512
MIME_BY_FORMAT = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
JPEG_QUALITY = 90
WEBP_QUALITY = 90
_SCHEME = re.compile(r"^(data):|^([a-z][a-z0-9+.-]+)://", re.IGNORECASE)  # C:\x, a:b.png: paths
_DATA_IMAGE = re.compile(r"data:image/[a-z0-9.+-]+;base64,[A-Za-z0-9+/]*={0,2}\Z", re.IGNORECASE)
_NOT_INERT = re.compile(r"[^\w .,:/-]|_")
_CONVERT_FIRST = {  # files people try that Pillow cannot read: what to do instead
    ".svg": " (SVG is vector art: export it as PNG first)",
    ".pdf": " (a PDF: render the page to PNG first)",
    ".heic": " (HEIC: export it as JPEG, or pip install pillow-heif and register its opener)",
    ".heif": " (HEIF: export it as JPEG, or pip install pillow-heif and register its opener)",
}
_DEFAULT_RULE = DEFAULT_IMAGE_RULE


@dataclass(frozen=True)
class ImageSource:
    """One image source with its own detail: ``ImageSource("plot.png", detail="low")``."""

    source: Any
    detail: Detail | None = None  # None: the detail given to prepare_images


def prepare_images(sources: Any, *, model: ModelInfo, detail: str = "auto") -> list[ImageRef]:
    """ImageRefs for ``sources``, scaled for ``model``; raises ImageError before anything is sent.

    ``sources`` is a list of sources, or one source alone (``images="chart.png"`` is one image, not
    nine one-letter file names); None is no images.
    """
    if sources is None:
        return []
    sources = [sources] if _is_single(sources) else list(sources)
    if not sources:
        return []
    if model.vision is False:
        raise ImageError(vision_refusal(model))
    if len(sources) > MAX_IMAGES:
        raise ImageError(f"{len(sources)} images in one question; OpenAI takes up to {MAX_IMAGES} per request")
    refs = [prepare_image(source, model=model, detail=detail) for source in sources]
    total = sum(ref_bytes(ref) for ref in refs)
    if total > MAX_REQUEST_IMAGE_BYTES:
        raise ImageError(f"the {len(refs)} images are {_mb(total)} together; OpenAI takes up to "
                         f"{_mb(MAX_REQUEST_IMAGE_BYTES)} of images per request: send fewer, or use detail=\"low\"")
    return refs


def vision_refusal(model: ModelInfo) -> str:
    """The one line that refuses images for ``model``, known (or found by asking its server) not to
    take them, or a local model whose server does not say it does."""
    source = model.vision_source
    if model.local and source.startswith("the server does not say"):
        return f"{model.name} may not take images: {source}; pass vision=True if it does, or leave the images out"
    said = "" if source.startswith("model table") else f" ({source})"
    return (f"{model.name} does not take images{said}: ask a vision model (e.g. model=\"gpt-4o-mini\", "
            "\"gpt-4o\" or \"gpt-4.1\") or leave the images out")


def prepare_image(source: Any, *, model: ModelInfo, detail: str = "auto") -> ImageRef:
    """One ImageRef for ``source`` (see the module docstring for what a source can be)."""
    source, chosen = _unwrap(source, detail)
    if isinstance(source, ImageRef):
        return _checked_ref(source if chosen is None else replace(source, detail=chosen))
    detail = chosen or "auto"
    rule = model.image_tokens or _DEFAULT_RULE
    if isinstance(source, (str, PathLike)):
        return _from_string(source, rule, detail)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _from_bytes(bytes(source), "bytes", rule, detail)
    pil = _pil_image(source)
    if pil is not None:
        return _from_pil(pil, "PIL image", rule, detail)
    figure = _matplotlib_figure(source)
    if figure is not None:
        return _from_bytes(_figure_png(figure), "figure", rule, detail)
    if _is_ipython_image(source):
        return _from_ipython_image(source, rule, detail)
    hint = " (for an array of pixels: PIL.Image.fromarray(array))" if hasattr(source, "__array_interface__") else ""
    raise ImageError(f"cannot use an object of type {type(source).__name__} as an image{hint}: give a file path, "
                     "an http(s) URL, bytes, a PIL image, a matplotlib figure or an IPython Image")


def target_size(width: int, height: int, rule: ImageTokenRule | None, detail: str) -> tuple[int, int]:
    """The largest size the model uses for a ``width`` x ``height`` image: larger pixels are wasted."""
    if detail == "low":
        w, h = _fit(width, height, LOW_DETAIL_SIZE, LOW_DETAIL_SIZE)
    elif (rule or _DEFAULT_RULE).kind == "patch":
        w, h = scaled_for_patches(width, height)
    elif rule is not None and rule.kind == "area":
        w, h = scaled_for_area(width, height, rule)
    else:
        w, h = scaled_for_high_detail(width, height)
    return max(w, 1), max(h, 1)


def ref_bytes(ref: ImageRef) -> int:
    """Decoded bytes of a data-URL image (0 for an http(s) URL: the provider fetches it)."""
    if not ref.url.startswith("data:"):
        return 0
    payload = ref.url.partition(",")[2]
    return len(payload) * 3 // 4 - payload[-2:].count("=")


def displayable_url(url: str) -> bool:
    """True for the only image URLs we ever put in an ``<img>``: http(s) with a host, and base64
    ``data:image/...`` URLs. A transcript or store file is data anyone could have written: a
    ``javascript:`` or ``data:text/html`` URL in it must never reach a page as a link or source."""
    if _DATA_IMAGE.match(url):
        return True
    parts = urlsplit(url)
    return (parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
            and not any(char.isspace() or ord(char) < 32 for char in url))


def image_label(ref: ImageRef) -> str:
    """What an image is called where it is shown as text: its source, else its URL (never a data URL)."""
    return ref.source or ("data URL" if ref.url.startswith("data:") else ref.url)


def thumbnail_html(ref: ImageRef, size: int = 96) -> str:
    """A small ``<img>`` for transcripts: data images shrunk to ``size`` px (2x for dense screens),
    URL images loaded by the browser from their URL; the title says source, size and detail.

    An image whose URL is not ``displayable_url`` (a hostile or damaged transcript) is shown as
    text instead: ``[image: label]``, every character that could start markup written as an
    entity, so it stays text in Markdown and in HTML."""
    if not displayable_url(ref.url):
        dims = f" {ref.width}x{ref.height}" if ref.width and ref.height else ""
        return inert_text(f"[image: {image_label(ref)}{dims}]")
    label = ref.source or ("image" if ref.url.startswith("data:") else ref.url)
    facts = [label] + ([f"{ref.width}\u00d7{ref.height}"] if ref.width and ref.height else [])
    facts.append(f"detail {ref.detail}")
    title = html.escape(" \u00b7 ".join(facts), quote=True)
    src = _thumbnail_url(ref.url, size) if ref.url.startswith("data:") else ref.url
    return (f'<img src="{html.escape(src, quote=True)}" alt="{html.escape(label, quote=True)}" '
            f'title="{title}" loading="lazy" style="max-width:{int(size)}px;max-height:{int(size)}px;'
            'object-fit:contain;border:1px solid #ccc;border-radius:3px;margin:2px">')


def inert_text(text: str) -> str:
    """``text`` for a Markdown or HTML output, shown exactly as written: every character but
    letters, digits, spaces and ``.,:/-`` as a numeric entity (CommonMark reads entities as
    literal characters, never as markup; so do browsers)."""
    return _NOT_INERT.sub(lambda match: f"&#{ord(match.group())};", " ".join(text.split()))


# -- sources ---------------------------------------------------------------------------------------
def _is_single(sources: Any) -> bool:
    """True for one source passed where a list was expected (strings, bytes and arrays iterate)."""
    return (isinstance(sources, (str, bytes, bytearray, memoryview, PathLike, ImageRef, ImageSource))
            or hasattr(sources, "__array_interface__") or not hasattr(sources, "__iter__"))


def _unwrap(source: Any, detail: str) -> tuple[Any, str | None]:
    """The source and its detail (None: an ImageRef keeps its own) from a wrapper or a pair."""
    explicit: str | None = None
    if isinstance(source, ImageSource):
        source, explicit = source.source, source.detail
    elif isinstance(source, tuple) and len(source) == 2 and isinstance(source[1], str):
        source, explicit = source
    if explicit is None and isinstance(source, ImageRef):
        return source, None
    chosen = explicit or detail
    if chosen not in DETAILS:
        raise ImageError(f"detail must be one of {', '.join(DETAILS)}; got {chosen!r}")
    return source, chosen


def _from_string(source: str | PathLike[str], rule: ImageTokenRule, detail: str) -> ImageRef:
    text = source if isinstance(source, str) else None
    if text is not None:
        text = text.strip()
        match = _SCHEME.match(text)
        if match:
            scheme = (match.group(1) or match.group(2)).lower()
            if scheme in ("http", "https"):
                return _from_url(text, detail)
            if scheme == "data":
                raw, label = _decode_data_url(text), "data URL"
                return _from_bytes(raw, label, rule, detail)
            local = f"the path itself ({urlsplit(text).path!r})" if scheme == "file" else "a local path"
            raise ImageError(f"unsupported URL scheme {scheme}:// in {_short(text)}: give {local}, an http(s) "
                             "URL or a data:image/...;base64 URL")
    path = Path(text if text is not None else source).expanduser()
    if not path.exists():
        # "%%chat -i fig2" with no fig2 defined arrives here as the plain string "fig2".
        named = text is not None and all(part.isidentifier() for part in text.split("."))
        hint = "; if it names a variable, that variable is not defined" if named and not path.suffix else ""
        raise ImageError(f"image file not found: {str(path)!r}{hint}")
    if not path.is_file():
        raise ImageError(f"not an image file: {str(path)!r} is a directory")
    return _from_bytes(path.read_bytes(), str(path), rule, detail)


def _from_url(url: str, detail: str) -> ImageRef:
    parts = urlsplit(url)
    if not parts.hostname:
        raise ImageError(f"not a usable image URL: {_short(url)} has no host")
    return ImageRef(url=url, detail=detail, source=url)


def _decode_data_url(url: str) -> bytes:
    header, _, payload = url.partition(",")
    mime = header[5:].split(";")[0].lower()
    if not mime.startswith("image/") or not header.endswith(";base64"):
        raise ImageError(f"a data URL must hold a base64 image (data:image/png;base64,...); got "
                         f"{_short(header + ',')}")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError("the data URL's base64 payload is broken: it cannot be decoded") from None


def _from_ipython_image(image: Any, rule: ImageTokenRule, detail: str) -> ImageRef:
    """IPython.display.Image, duck-typed: embedded data, else its URL, else its file."""
    data = getattr(image, "data", None)
    if isinstance(data, (bytes, bytearray)):
        return _from_bytes(bytes(data), getattr(image, "filename", None) or "IPython Image", rule, detail)
    for source in (getattr(image, "url", None), getattr(image, "filename", None), data):
        if isinstance(source, str) and source:
            return _from_string(source, rule, detail)
    raise ImageError("this IPython Image holds no data, URL or file name")


def _pil_image(source: Any) -> PILImage.Image | None:
    import sys

    pil = sys.modules.get("PIL.Image")  # a PIL image exists only if PIL is imported already
    return source if pil is not None and isinstance(source, pil.Image) else None


def _matplotlib_figure(source: Any) -> Any:
    """The matplotlib Figure behind ``source`` (a Figure, SubFigure or Axes), or None."""
    if not type(source).__module__.startswith("matplotlib"):
        return None
    figure = source if hasattr(source, "savefig") else getattr(source, "figure", None)
    while figure is not None and not hasattr(figure, "savefig") and hasattr(figure, "figure"):
        figure = figure.figure
    return figure if figure is not None and hasattr(figure, "savefig") else None


def _figure_png(figure: Any) -> bytes:
    # savefig on the figure object works without pyplot: it renders with the Agg canvas.
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")  # what the inline backend shows
    return buffer.getvalue()


def _is_ipython_image(source: Any) -> bool:
    return (type(source).__module__.startswith("IPython") and
            any(hasattr(source, name) for name in ("data", "url", "filename")))


# -- pixels ----------------------------------------------------------------------------------------
def _from_bytes(raw: bytes, label: str, rule: ImageTokenRule, detail: str) -> ImageRef:
    """Decode ``raw``; keep it as is when the API takes it and it is small enough, else re-encode."""
    from PIL import Image, UnidentifiedImageError

    if not raw:
        raise ImageError(f"not an image: {_label(label)} is empty")
    try:
        image = Image.open(io.BytesIO(raw))
        width, height = image.size
        target = target_size(width, height, rule, detail)
        usable = (image.format in MIME_BY_FORMAT and not getattr(image, "is_animated", False)
                  and _eight_bit_colour(image, raw) and len(raw) <= MAX_IMAGE_BYTES)  # taken as it is
        keep = usable and target == (width, height)
        if image.format in ("JPEG", "MPO") and target != (width, height):
            image.draft(None, target)  # decode at 1/2, 1/4 or 1/8 scale: much faster for photos
        image.load()  # decodes: a truncated or corrupt file fails here, not at the provider
    except Image.DecompressionBombError:
        raise ImageError(f"image too large to decode safely: {_label(label)} has more than "
                         f"{2 * (Image.MAX_IMAGE_PIXELS or 0):,} pixels") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        fix = _CONVERT_FIRST.get(Path(label).suffix.lower(), "")
        raise ImageError(f"not an image: {_label(label)} cannot be read as PNG, JPEG, GIF, WEBP or another "
                         f"format Pillow knows{fix}") from None
    mime = MIME_BY_FORMAT.get(image.format or "", "")
    if keep:
        return _ref(raw, mime, width, height, label, detail)
    ref = _from_pil(image, label, rule, detail, source_format=image.format)
    if usable and len(raw) <= ref_bytes(ref):  # scaling did not make the upload smaller
        return _ref(raw, mime, width, height, label, detail)
    return ref


def _from_pil(image: PILImage.Image, label: str, rule: ImageTokenRule, detail: str,
              *, source_format: str | None = None) -> ImageRef:
    """Scale and encode a decoded image: JPEG stays JPEG, WEBP stays WEBP, everything else PNG."""
    from PIL import ImageOps

    fmt = source_format or image.format
    if fmt in ("JPEG", "MPO") and image.getexif().get(0x0112, 1) != 1:
        image = ImageOps.exif_transpose(image)  # the EXIF rotation is lost on re-encoding: apply it
    image = _normalize_mode(image)
    target = target_size(*image.size, rule, detail)
    if target != image.size:
        image = image.resize(target, resample=_bicubic(), reducing_gap=2.0)  # box-reduce, then bicubic
    buffer = io.BytesIO()
    if fmt in ("JPEG", "MPO") and image.mode in ("RGB", "L"):
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=True)
        mime = "image/jpeg"
    elif fmt == "WEBP":
        image.save(buffer, format="WEBP", quality=WEBP_QUALITY)
        mime = "image/webp"
    else:
        image.save(buffer, format="PNG", optimize=False)
        mime = "image/png"
    return _ref(buffer.getvalue(), mime, *image.size, label, detail)


def _eight_bit_colour(image: PILImage.Image, raw: bytes) -> bool:
    """False for pixels a provider may not take as they are: 16 bits per channel (Pillow reads a
    16-bit RGB PNG as mode "RGB", so the file's header is what says so) and CMYK/YCCK JPEGs."""
    if image.mode in ("CMYK", "YCbCr", "LAB", "HSV") or image.mode.startswith(("I", "F")):
        return False
    return not (raw[12:16] == b"IHDR" and raw[24:25] == b"\x10")  # a PNG's bit depth byte


def _normalize_mode(image: PILImage.Image) -> PILImage.Image:
    """8-bit L, LA, RGB or RGBA: what every encoder and every provider takes."""
    if image.mode in ("L", "LA", "RGB", "RGBA"):
        return image
    alpha = "A" in image.getbands() or "transparency" in image.info
    if image.mode == "F":
        return image.convert("L")
    if image.mode.startswith("I"):  # 16/32-bit grey: keep the top 8 bits
        return image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    return image.convert("RGBA" if alpha else "RGB")


def _bicubic() -> Any:
    from PIL import Image

    return Image.Resampling.BICUBIC


def _ref(data: bytes, mime: str, width: int, height: int, label: str, detail: str) -> ImageRef:
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageError(f"image too large: {_label(label)} is {_mb(len(data))} as sent ({width}x{height}); "
                         f"OpenAI takes up to {_mb(MAX_IMAGE_BYTES)} per image: crop it or save it as JPEG")
    url = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    return ImageRef(url=url, detail=detail, width=width, height=height, mime=mime, source=label)


def _checked_ref(ref: ImageRef) -> ImageRef:
    """An ImageRef given as is (e.g. from a saved transcript): same checks as a fresh source."""
    if ref.detail not in DETAILS:
        raise ImageError(f"detail must be one of {', '.join(DETAILS)}; got {ref.detail!r}")
    match = _SCHEME.match(ref.url)
    scheme = (match.group(1) or match.group(2)).lower() if match else ""
    if scheme in ("http", "https"):
        _from_url(ref.url, ref.detail)  # raises for a URL without a host
        return ref
    if scheme != "data":
        raise ImageError(f"unsupported URL in an ImageRef: {_short(ref.url)}; it must hold an http(s) URL or a "
                         "data:image/...;base64 URL")
    raw = _decode_data_url(ref.url)
    if len(raw) > MAX_IMAGE_BYTES:
        raise ImageError(f"image too large: {_label(ref.source or 'image')} is {_mb(len(raw))}; OpenAI takes "
                         f"up to {_mb(MAX_IMAGE_BYTES)} per image: crop it or save it as JPEG")
    if ref.width is None or ref.height is None:
        width, height = data_url_size(ref.url)
        if width is None:
            raise ImageError(f"not an image: the data URL of {_label(ref.source or 'image')} cannot be decoded")
        ref = replace(ref, width=width, height=height)
    return ref


@lru_cache(maxsize=128)
def _thumbnail_url(url: str, size: int) -> str:
    """A small PNG/JPEG data URL of a data-URL image, so transcripts stay light."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(base64.b64decode(url.partition(",")[2]))) as image:
            image.load()
            if max(image.size) <= size and len(url) < 64_000:
                return url
            small = _normalize_mode(image)
            small.thumbnail((size * 2, size * 2))  # 2x for high-density screens
            buffer = io.BytesIO()
            if small.mode in ("RGB", "L"):
                small.save(buffer, format="JPEG", quality=80)
                mime = "image/jpeg"
            else:
                small.save(buffer, format="PNG")
                mime = "image/png"
    except (OSError, ValueError, SyntaxError, binascii.Error):
        return url
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def _fit(width: int, height: int, max_width: int, max_height: int) -> tuple[int, int]:
    scale = min(max_width / width, max_height / height, 1.0)
    return (width, height) if scale == 1.0 else (int(width * scale), int(height * scale))


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def _label(label: str) -> str:
    return label if label in ("bytes", "figure", "PIL image", "data URL", "IPython Image") else repr(label)


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")
