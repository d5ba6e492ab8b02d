"""Images: every source kind as sent (through the loopback server's request log), scaling to what
the model uses, token counts against OpenAI's worked examples, trimming, and every bad input."""

from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin
from support.loopback_client import chat_bodies

from jupyter_llmchat.core import errors
from jupyter_llmchat.core.chatbot import Chatbot
from jupyter_llmchat.core.images import (
    ImageSource,
    displayable_url,
    inert_text,
    prepare_image,
    prepare_images,
    target_size,
    thumbnail_html,
)
from jupyter_llmchat.core.messages import ImageRef, Message
from jupyter_llmchat.core.models import model_info
from jupyter_llmchat.core.reply import NullSink
from jupyter_llmchat.core.tokens import _patch_count, count_prompt_tokens, image_tokens, scaled_for_patches

KEY = "sk-test-images-0000"
GPT4O = model_info("gpt-4o")


# -- helpers ------------------------------------------------------------------------------------
def picture(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """A gradient (not a flat colour, so encoders have real work) of ``size`` in ``mode``."""
    width, height = size
    gradient = Image.linear_gradient("L").resize(size)
    if mode == "L":
        return gradient
    rgb = Image.merge("RGB", (gradient, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
                              Image.new("L", size, 90)))
    return rgb.convert(mode) if mode != "RGB" else rgb


def save(image: Image.Image, path: Path, **options) -> Path:
    image.save(path, **options)
    return path


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def decode(url: str) -> tuple[str, bytes, Image.Image]:
    """MIME type, raw bytes and decoded image of a data URL as the server received it."""
    header, _, payload = url.partition(",")
    assert header.startswith("data:") and header.endswith(";base64")
    raw = base64.b64decode(payload, validate=True)
    image = Image.open(io.BytesIO(raw))
    image.load()
    return header[5:-7], raw, image


def make_bot(loopback, model: str = "gpt-4o", **kwargs) -> Chatbot:
    return Chatbot(model, base_url=loopback.base_url, api_key=KEY, max_retries=0, **kwargs)


def image_parts(body: dict, message: int = -1) -> list[dict]:
    content = body["messages"][message]["content"]
    return [part["image_url"] for part in content if part["type"] == "image_url"]


# -- token counts: OpenAI's worked examples ------------------------------------------------------
@pytest.mark.parametrize("model,size,detail,expected", [
    ("gpt-4o", (1024, 1024), "high", 765),          # 768x768: 4 tiles * 170 + 85
    ("gpt-4o", (2048, 4096), "high", 1105),         # 1024x2048 -> 768x1536: 6 tiles * 170 + 85
    ("gpt-4o", (4096, 8192), "low", 85),            # low detail: the base cost, whatever the size
    ("gpt-4o-mini", (1024, 1024), "high", 2833 + 4 * 5667),
    ("gpt-4o-mini", (4096, 8192), "low", 2833),
    ("gpt-4.1-mini", (1024, 1024), "high", math.ceil(1024 * 1.62)),   # 32x32 patches
    ("gpt-4.1-mini", (1800, 2400), "high", math.ceil(1452 * 1.62)),   # shrunk to 33x44 patches
    ("gpt-4.1-nano", (1800, 2400), "high", math.ceil(1452 * 2.46)),
])
def test_image_tokens_match_openai_worked_examples(model, size, detail, expected):
    assert image_tokens(*size, detail, model_info(model).image_tokens) == expected


def test_patch_counts_match_openai_examples():
    assert _patch_count(1024, 1024) == 1024
    assert _patch_count(1800, 2400) == 1452
    # OpenAI: 1800x2400 shrinks to 1056x1408 = 33 x 44 patches.
    assert scaled_for_patches(1800, 2400) == (1056, 1408)
    assert scaled_for_patches(1024, 1024) == (1024, 1024)


@pytest.mark.parametrize("model,size,detail,sent", [
    ("gpt-4o", (1024, 1024), "high", (768, 768)),
    ("gpt-4o", (2048, 4096), "auto", (768, 1536)),
    ("gpt-4o", (3000, 2000), "high", (1152, 768)),
    ("gpt-4o", (600, 400), "high", (600, 400)),      # never scaled up
    ("gpt-4o", (4096, 8192), "low", (256, 512)),     # low: the 512x512 version the model sees
    ("gpt-4.1-mini", (1800, 2400), "high", (1056, 1408)),
    ("gpt-4.1-mini", (3000, 200), "high", (3000, 200)),  # 94 x 7 = 658 patches: under the cap
    ("llama3.2-vision", (4000, 3000), "auto", (1024, 768)),  # unknown model: counted with gpt-4o's rule
])
def test_target_size_is_what_the_model_uses(model, size, detail, sent):
    info = model_info(model)
    assert target_size(*size, info.image_tokens, detail) == sent
    # Sending the scaled image costs exactly what the original would: no pixels paid for twice.
    assert image_tokens(*sent, detail, info.image_tokens) == image_tokens(*size, detail, info.image_tokens)


# -- every source kind, as sent ------------------------------------------------------------------
def test_each_source_kind_is_sent_as_the_api_takes_it(loopback, tmp_path):
    import matplotlib.figure
    from IPython.display import Image as IPythonImage

    small_png = save(picture((300, 200)), tmp_path / "small.png")
    big_png = save(picture((3000, 2000)), tmp_path / "big.png")
    photo = save(picture((4000, 3000)), tmp_path / "photo.jpg", quality=85)
    gif = save(picture((120, 80)).convert("P"), tmp_path / "anim-free.gif")
    webp = save(picture((2400, 1200)), tmp_path / "wide.webp", quality=80)
    figure = matplotlib.figure.Figure(figsize=(4, 3), dpi=100)
    figure.add_subplot().plot([1, 3, 2])
    data_url = "data:image/png;base64," + base64.b64encode(encoded(picture((1600, 1600)), "PNG")).decode()
    sources = [
        str(small_png),                                   # 0 kept byte for byte
        big_png,                                          # 1 Path, scaled
        str(photo),                                       # 2 JPEG stays JPEG, scaled
        str(gif),                                         # 3 GIF kept
        str(webp),                                        # 4 WEBP stays WEBP, scaled
        small_png.read_bytes(),                           # 5 bytes
        picture((1024, 1024), "RGBA"),                    # 6 PIL image, alpha kept
        figure,                                           # 7 matplotlib figure, no pyplot
        IPythonImage(filename=str(small_png)),            # 8 IPython.display.Image
        "https://example.com/chart.png",                  # 9 URL: sent as is
        data_url,                                         # 10 data URL: scaled like any image
        (str(big_png), "low"),                            # 11 per-image detail, pair
        ImageSource(str(small_png), detail="high"),       # 12 per-image detail, wrapper
    ]
    bot = make_bot(loopback)
    reply = bot.ask("What is in these?", images=sources, sink=NullSink())
    parts = image_parts(chat_bodies(loopback)[-1])
    assert len(parts) == len(sources)
    expected = [  # (mime, size sent, detail)
        ("image/png", (300, 200), "auto"), ("image/png", (1152, 768), "auto"),
        ("image/jpeg", (1024, 768), "auto"), ("image/gif", (120, 80), "auto"),
        ("image/webp", (1536, 768), "auto"), ("image/png", (300, 200), "auto"),
        ("image/png", (768, 768), "auto"), ("image/png", None, "auto"),
        ("image/png", (300, 200), "auto"), None, ("image/png", (768, 768), "auto"),
        ("image/png", (512, 341), "low"), ("image/png", (300, 200), "high"),
    ]
    for part, want, _source in zip(parts, expected, sources):
        if want is None:
            assert part == {"url": "https://example.com/chart.png", "detail": "auto"}
            continue
        mime, raw, image = decode(part["url"])
        assert (mime, part["detail"]) == (want[0], want[2])
        if want[1] is not None:
            assert image.size == want[1]
    assert decode(parts[0]["url"])[1] == small_png.read_bytes()  # small enough: not re-encoded
    assert decode(parts[3]["url"])[1] == gif.read_bytes()
    assert decode(parts[6]["url"])[2].mode == "RGBA"
    fig_image = decode(parts[7]["url"])[2]
    assert 300 < fig_image.width <= 400 and 200 < fig_image.height <= 300  # 4x3 in at 100 dpi, tight
    # The history keeps the sizes sent, so the counts of later requests stay exact.
    question = bot.history[0]
    assert [(i.width, i.height) for i in question.images][:3] == [(300, 200), (1152, 768), (1024, 768)]
    assert question.images[9].width is None and question.images[9].source == "https://example.com/chart.png"
    assert question.images[1].source == str(big_png) and question.images[7].source == "figure"
    # The server counts the prompt from what it received; it agrees with our count.
    assert reply.usage.prompt_tokens == reply.request["prompt_tokens_counted"]


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4o-mini", "gpt-4.1-mini", "gpt-5-mini", "gpt-5"])
def test_server_prompt_tokens_match_ours_for_image_prompts(loopback, tmp_path, model):
    sources = [save(picture((2000, 1500)), tmp_path / "a.png"), (picture((800, 600)), "low"),
               "https://example.com/x.jpg", save(picture((500, 3000)), tmp_path / "tall.jpg")]
    bot = make_bot(loopback, model=model, system="You describe images.")
    first = bot.ask("Describe them.", images=sources, sink=NullSink())
    second = bot.ask("And the second one?", sink=NullSink())  # history with images is resent
    for reply in (first, second):
        assert reply.usage.prompt_tokens == reply.request["prompt_tokens_counted"]
    sent = chat_bodies(loopback)[-1]["messages"]
    assert count_prompt_tokens(sent, model) == second.usage.prompt_tokens
    assert len(image_parts({"messages": sent}, 1)) == 4


def test_patch_model_gets_the_image_shrunk_to_the_patch_cap(loopback):
    bot = make_bot(loopback, model="gpt-4.1-mini")
    reply = bot.ask("?", images=[picture((1800, 2400))], sink=NullSink())
    _, _, image = decode(image_parts(chat_bodies(loopback)[-1])[0]["url"])
    assert image.size == (1056, 1408)
    text_only = bot.conversation.counter.count_message("user", "?")
    assert bot.history[0].tokens == text_only + math.ceil(1452 * 1.62)
    assert reply.usage.prompt_tokens == reply.request["prompt_tokens_counted"]


# -- formats the API does not take are converted -------------------------------------------------
@pytest.mark.parametrize("name,image,options,mime,size,mode", [
    ("scan.bmp", picture((640, 480)), {}, "image/png", (640, 480), "RGB"),
    ("layer.tiff", picture((900, 900), "RGBA"), {}, "image/png", (768, 768), "RGBA"),
    ("cmyk.jpg", picture((2000, 1000)).convert("CMYK"), {}, "image/jpeg", (1536, 768), "RGB"),
    ("palette.png", Image.effect_noise((1600, 1600), 60).convert("P"), {}, "image/png", (768, 768), "RGB"),
    ("depth.png", picture((1600, 800), "L").convert("I;16"), {}, "image/png", (1536, 768), "L"),
])
def test_other_formats_and_modes_are_converted(tmp_path, name, image, options, mime, size, mode):
    path = save(image, tmp_path / name, **options)
    ref = prepare_image(str(path), model=GPT4O)
    got_mime, _, sent = decode(ref.url)
    assert (got_mime, sent.size, sent.mode, ref.mime) == (mime, size, mode, mime)
    assert (ref.width, ref.height) == size


def png_16bit_rgb(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A 16-bit-per-channel RGB PNG, written chunk by chunk: Pillow reads such files but cannot write them."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + struct.pack(">HHH", *rgb) * width
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b""))


def test_small_16_bit_pngs_and_cmyk_jpegs_are_converted_too(tmp_path):
    # Small enough to be sent unscaled, yet not as they are: the docstring promises 8-bit grey or RGB.
    grey = Image.new("I;16", (40, 20), 40000)
    grey.putpixel((1, 0), 512)
    grey_file = save(grey, tmp_path / "depth.png")
    with Image.open(grey_file) as opened:
        assert opened.mode == "I;16" and grey_file.read_bytes()[24] == 16
    mime, raw, sent = decode(prepare_image(str(grey_file), model=GPT4O).url)
    assert (mime, sent.mode, sent.size) == ("image/png", "L", (40, 20))
    assert (sent.getpixel((0, 0)), sent.getpixel((1, 0))) == (156, 2)  # the top 8 bits: 40000 // 256, 512 // 256
    assert raw != grey_file.read_bytes()

    rgb16 = tmp_path / "deep.png"
    rgb16.write_bytes(png_16bit_rgb(8, 4, (65535, 32768, 0)))
    mime, raw, sent = decode(prepare_image(str(rgb16), model=GPT4O).url)
    assert (mime, sent.mode, sent.size, sent.getpixel((0, 0))) == ("image/png", "RGB", (8, 4), (255, 128, 0))
    assert raw[24] == 8  # 8 bits per channel now

    cmyk_file = save(Image.new("CMYK", (40, 20), (0, 255, 255, 0)), tmp_path / "print.jpg", quality=95)
    with Image.open(cmyk_file) as opened:
        assert opened.mode == "CMYK"
    ref = prepare_image(str(cmyk_file), model=GPT4O)
    mime, _, sent = decode(ref.url)
    assert (mime, sent.mode, sent.size, ref.mime) == ("image/jpeg", "RGB", (40, 20), "image/jpeg")
    red, green, blue = sent.getpixel((20, 10))
    assert red > 240 and green < 15 and blue < 15  # CMYK (0, 100%, 100%, 0) is red

    plain = save(picture((40, 20)), tmp_path / "plain.png")  # an 8-bit RGB PNG is still sent as it is
    assert decode(prepare_image(str(plain), model=GPT4O).url)[1] == plain.read_bytes()


def test_animated_gif_becomes_its_first_frame_as_png(tmp_path):
    frames = [Image.new("RGB", (64, 48), colour) for colour in ("red", "blue")]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    _, _, sent = decode(prepare_image(str(path), model=GPT4O).url)
    assert sent.format == "PNG" and sent.size == (64, 48) and sent.getpixel((10, 10))[:3] == (255, 0, 0)


def test_exif_rotation_is_applied_when_a_photo_is_reencoded(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = save(picture((3000, 1000)), tmp_path / "phone.jpg", exif=exif)
    ref = prepare_image(str(path), model=GPT4O)
    assert decode(ref.url)[2].size == (682, 2048) == (ref.width, ref.height)


def test_a_file_smaller_than_its_scaled_version_is_sent_as_it_is(tmp_path):
    from PIL import ImageDraw

    screen = Image.new("RGB", (3000, 2000), "white")
    draw = ImageDraw.Draw(screen)
    for row in range(0, 2000, 40):  # sharp text: scaling anti-aliases it, and the PNG grows
        draw.text((20, row), "the quick brown fox jumps over the lazy dog " * 4, fill="black", font_size=24)
    path = save(screen, tmp_path / "screen.png")
    ref = prepare_image(str(path), model=GPT4O)
    assert decode(ref.url)[1] == path.read_bytes() and (ref.width, ref.height) == (3000, 2000)
    # The provider scales it to 1152x768 itself: the same tokens as if we had scaled it.
    assert image_tokens(3000, 2000, "auto", GPT4O.image_tokens) == image_tokens(1152, 768, "auto",
                                                                                GPT4O.image_tokens) == 1105


def test_oversized_file_with_small_pixels_is_reencoded_without_its_metadata(tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text("notes", "x" * (21 * 1024 * 1024))  # 21 MB of text chunk, 200x100 pixels
    path = save(picture((200, 100)), tmp_path / "bloated.png", pnginfo=info)
    assert path.stat().st_size > 20 * 1024 * 1024
    ref = prepare_image(str(path), model=GPT4O)
    mime, raw, image = decode(ref.url)
    assert mime == "image/png" and image.size == (200, 100) and len(raw) < 100_000


# -- trimming and transcripts --------------------------------------------------------------------
def test_old_turns_with_images_are_trimmed_whole(loopback):
    bot = make_bot(loopback)
    loopback.queue(reply="A gradient.")
    bot.ask("What is this?", images=[picture((1024, 1024))], sink=NullSink())
    loopback.queue(reply="Blue.")
    bot.ask("Which colour dominates?", sink=NullSink())
    image_turn = sum(m.tokens for m in bot.history[:2])
    text_turn = sum(m.tokens for m in bot.history[2:])
    assert image_turn > 765 > text_turn  # the image alone is 765 tokens (768x768: 4 tiles)
    question = bot.conversation.make("user", "Summarise.")
    bot.prompt_token_limit = 3 + question.tokens + text_turn + 100  # room for the text turn only
    reply = bot.ask("Summarise.", sink=NullSink())
    sent = chat_bodies(loopback)[-1]["messages"]
    assert [m["content"] for m in sent] == ["Which colour dominates?", "Blue.", "Summarise."]
    assert reply.usage.prompt_tokens == reply.request["prompt_tokens_counted"]
    bot.prompt_token_limit = None
    bot.ask("Again, with everything.", sink=NullSink())
    assert len(image_parts(chat_bodies(loopback)[-1], 0)) == 1  # with room, the image turn is back


def test_saved_transcripts_keep_images_and_can_be_sent_again(loopback, tmp_path):
    bot = make_bot(loopback)
    bot.ask("Look", images=[str(save(picture((900, 600)), tmp_path / "p.png")), "https://example.com/a.png"],
            sink=NullSink())
    saved = json.dumps([m.to_dict() for m in bot.history])
    restored = [Message.from_dict(data) for data in json.loads(saved)]
    assert restored == bot.history
    assert restored[0].images[0].source == str(tmp_path / "p.png") and restored[0].images[0].width == 900
    again = make_bot(loopback)
    again.ask("And again", images=list(restored[0].images), sink=NullSink())
    assert image_parts(chat_bodies(loopback)[-1]) == image_parts(chat_bodies(loopback)[0])


def test_thumbnail_html_for_urls_and_data_images():
    url_ref = ImageRef(url="https://example.com/a.png?x=1&y=\"2\"", detail="low",
                       source="https://example.com/a.png?x=1&y=\"2\"")
    assert thumbnail_html(url_ref, size=64) == (
        '<img src="https://example.com/a.png?x=1&amp;y=&quot;2&quot;" '
        'alt="https://example.com/a.png?x=1&amp;y=&quot;2&quot;" '
        'title="https://example.com/a.png?x=1&amp;y=&quot;2&quot; \u00b7 detail low" loading="lazy" '
        'style="max-width:64px;max-height:64px;object-fit:contain;border:1px solid #ccc;'
        'border-radius:3px;margin:2px">')
    photo = Image.effect_noise((1200, 900), 40).convert("RGB")  # noisy, like a photo: a large PNG
    ref = prepare_image((photo, "high"), model=GPT4O)
    html = thumbnail_html(ref)
    src = html.split('src="', 1)[1].split('"', 1)[0]
    mime, _, thumb = decode(src)
    assert mime == "image/jpeg" and max(thumb.size) == 192 and len(src) < len(ref.url) / 5
    assert 'alt="PIL image"' in html and 'title="PIL image \u00b7 1024\u00d7768 \u00b7 detail high"' in html


HOSTILE_URLS = ["javascript:alert(1)", "JavaScript:alert(document.cookie)", "data:text/html;base64,PHNjcmlwdD4=",
                "data:image/png,notbase64<script>", "vbscript:msgbox(1)", "file:///etc/passwd", "//evil.example/x.png",
                "http:///nohost.png", "https://example.com/a b.png", "  javascript:alert(1)"]


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_thumbnails_show_only_http_and_data_image_urls_everything_else_as_text(url):
    # A transcript or store file is data anyone could have written: its URL and label stay text.
    ref = ImageRef(url=url, detail="auto", source='<img src=x onerror="alert(1)">](javascript:alert(2))')
    assert not displayable_url(url)
    shown = thumbnail_html(ref)
    assert shown == ("&#91;image: &#60;img src&#61;x onerror&#61;&#34;alert&#40;1&#41;&#34;&#62;&#93;&#40;"
                     "javascript:alert&#40;2&#41;&#41;&#93;")
    assert not set("<>[]()\"'=`*_") & set(shown)  # no character that could start markup: entities only
    unlabelled = thumbnail_html(ImageRef(url=url, detail="auto", width=3, height=2))
    assert "<" not in unlabelled and unlabelled.endswith(" 3x2&#93;")


def test_displayable_urls_are_http_with_a_host_and_base64_data_images():
    for url in ("https://example.com/a.png?x=1&y=2", "http://127.0.0.1:8000/p.jpg", "data:image/png;base64,iVBORw==",
                "data:image/svg+xml;base64,PHN2Zz4="):
        assert displayable_url(url), url
        assert thumbnail_html(ImageRef(url=url, detail="auto")).startswith("<img src=")
    assert inert_text("été_1 <b>\n[x]") == "été&#95;1 &#60;b&#62; &#91;x&#93;"


# -- bad input: one line, nothing sent, conversation untouched -------------------------------------
def _bad_inputs(tmp_path: Path) -> list[tuple[object, str, str]]:
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not an image")
    truncated = tmp_path / "cut.png"
    whole = encoded(Image.effect_noise((400, 300), 40), "PNG")
    truncated.write_bytes(whole[:len(whole) // 2])  # a download that stopped halfway
    missing = tmp_path / "missing.png"
    vector = tmp_path / "logo.svg"
    vector.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')
    return [
        (str(missing), "gpt-4o", f"image file not found: '{missing}'"),
        (str(tmp_path), "gpt-4o", f"not an image file: '{tmp_path}' is a directory"),
        ("fig2", "gpt-4o", "image file not found: 'fig2'; if it names a variable, that variable is not defined"),
        ("results.fig", "gpt-4o", "image file not found: 'results.fig'"),
        (str(text_file), "gpt-4o", f"not an image: '{text_file}' cannot be read as PNG, JPEG, GIF, WEBP or "
                                   "another format Pillow knows"),
        (str(truncated), "gpt-4o", f"not an image: '{truncated}' cannot be read as PNG, JPEG, GIF, WEBP or "
                                   "another format Pillow knows"),
        (str(vector), "gpt-4o", f"not an image: '{vector}' cannot be read as PNG, JPEG, GIF, WEBP or another "
                                "format Pillow knows (SVG is vector art: export it as PNG first)"),
        (b"", "gpt-4o", "not an image: bytes is empty"),
        ("file:///tmp/x.png", "gpt-4o", "unsupported URL scheme file:// in 'file:///tmp/x.png': give the path "
                                        "itself ('/tmp/x.png'), an http(s) URL or a data:image/...;base64 URL"),
        ("ftp://host/x.png", "gpt-4o", "unsupported URL scheme ftp:// in 'ftp://host/x.png': give a local path, "
                                       "an http(s) URL or a data:image/...;base64 URL"),
        ("data:text/plain;base64,aGVsbG8=", "gpt-4o",
         "a data URL must hold a base64 image (data:image/png;base64,...); got 'data:text/plain;base64,'"),
        ("data:image/png;base64,@@@", "gpt-4o", "the data URL's base64 payload is broken: it cannot be decoded"),
        ("https:///x.png", "gpt-4o", "not a usable image URL: 'https:///x.png' has no host"),
        ((str(missing), "medium"), "gpt-4o", "detail must be one of auto, low, high; got 'medium'"),
        (42, "gpt-4o", "cannot use an object of type int as an image: give a file path, an http(s) URL, bytes, "
                       "a PIL image, a matplotlib figure or an IPython Image"),
        (ImageRef(url="file:///tmp/x.png"), "gpt-4o",
         "unsupported URL in an ImageRef: 'file:///tmp/x.png'; it must hold an http(s) URL or a "
         "data:image/...;base64 URL"),
        ("https://example.com/a.png", "gpt-3.5-turbo",
         'gpt-3.5-turbo does not take images: ask a vision model (e.g. model="gpt-4o-mini", "gpt-4o" or '
         '"gpt-4.1") or leave the images out'),
    ]


def test_every_bad_input_is_one_line_and_nothing_is_sent(loopback, tmp_path):
    for source, model, message in _bad_inputs(tmp_path):
        bot = make_bot(loopback, model=model)
        loopback.queue(reply="first")
        bot.ask("before", sink=NullSink())
        history = bot.history
        sent = len(chat_bodies(loopback))
        with pytest.raises(errors.ImageError) as caught:
            bot.ask("Look at this", images=[source], sink=NullSink())
        assert str(caught.value) == message and "\n" not in message
        assert len(chat_bodies(loopback)) == sent and bot.history == history


def _big_png_data_url(megabytes: float) -> str:
    info = PngImagePlugin.PngInfo()
    info.add_text("padding", "x" * int(megabytes * 1024 * 1024))
    raw = encoded(picture((64, 64)), "PNG", pnginfo=info)
    return "data:image/png;base64," + base64.b64encode(raw).decode()


def test_images_over_the_api_size_limits_are_refused_before_sending(loopback):
    bot = make_bot(loopback)
    too_big = ImageRef(url=_big_png_data_url(21), source="saved.png")
    with pytest.raises(errors.ImageError) as caught:
        bot.ask("?", images=[too_big], sink=NullSink())
    assert str(caught.value) == ("image too large: 'saved.png' is 21.0 MB; OpenAI takes up to 20.0 MB per image: "
                                 "crop it or save it as JPEG")
    parts = [ImageRef(url=_big_png_data_url(17), width=64, height=64) for _ in range(3)]
    with pytest.raises(errors.ImageError) as caught:
        bot.ask("?", images=parts, sink=NullSink())
    assert str(caught.value) == ("the 3 images are 51.0 MB together; OpenAI takes up to 50.0 MB of images per "
                                 "request: send fewer, or use detail=\"low\"")
    assert chat_bodies(loopback) == [] and bot.history == []


def test_prepare_images_limits_the_number_of_images():
    with pytest.raises(errors.ImageError, match="^501 images in one question; OpenAI takes up to 500 per request$"):
        prepare_images(["https://example.com/a.png"] * 501, model=GPT4O)


# -- an endpoint that rejects images: its error is explained -----------------------------------------
def test_an_image_the_endpoint_cannot_read_is_explained(loopback):
    bot = make_bot(loopback)
    broken = [{"role": "user", "content": [{"type": "text", "text": "?"}, {
        "type": "image_url", "image_url": {"url": "data:image/png;base64,not base64!", "detail": "auto"}}]}]
    with pytest.raises(errors.BadRequestError) as caught:
        list(bot.client.stream("gpt-4o", broken, {}))
    assert str(caught.value) == (
        "the endpoint could not fetch or read an image URL (400 invalid_image_url: Invalid image data URL in "
        "'messages[0].content[1].image_url.url': expected data:image/<type>;base64,<valid base64>.); give a "
        "public http(s) URL of a PNG, JPEG, WEBP or GIF, or the file itself")
    assert caught.value.code == "invalid_image_url" and caught.value.status == 400


def test_a_model_without_vision_gets_its_error_explained(loopback):
    bot = make_bot(loopback, model="loopback-demo")  # not in our table: images are sent, the server decides
    bot.ask("before", sink=NullSink())
    history = bot.history
    loopback.queue(fault="images_unsupported")
    with pytest.raises(errors.BadRequestError) as caught:
        bot.ask("What is this?", images=["https://example.com/a.png"], sink=NullSink())
    assert str(caught.value) == (
        f"model 'loopback-demo' at {loopback.base_url} does not take images (400: Invalid content type. "
        "image_url is only supported by certain models.); ask a vision model (e.g. model=\"gpt-4o-mini\") or "
        "leave the images out")
    assert bot.history == history
    # A text model the endpoint serves answers the same way; asked directly (our own check, which
    # stops known text models before sending, is bypassed), the client explains it alike.
    question = {"role": "user", "content": [{"type": "text", "text": "?"},
                                             {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}
    with pytest.raises(errors.BadRequestError) as caught:
        list(bot.client.stream("gpt-3.5-turbo", [question], {}))
    assert str(caught.value) == (
        f"model 'gpt-3.5-turbo' at {loopback.base_url} does not take images (400: Invalid content type. "
        "image_url is only supported by certain models.); ask a vision model (e.g. model=\"gpt-4o-mini\") or "
        "leave the images out")


# -- the notebook, run offline in a real kernel ------------------------------------------------------
def test_images_notebook_runs_offline(loopback):
    import os

    import nbformat
    from nbclient import NotebookClient

    root = Path(__file__).resolve().parents[2]
    nb = nbformat.read(root / "notebooks" / "images.ipynb", as_version=4)
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "AZURE_OPENAI_API_KEY")}
    env.update(OPENAI_BASE_URL=loopback.base_url, MPLBACKEND="module://matplotlib_inline.backend_inline",
               PYTHONPATH=os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")])))
    NotebookClient(nb, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(root / "notebooks")}}).execute(env=env)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    errors_shown = [(i, o) for i, cell in enumerate(code) for o in cell.outputs if o.output_type == "error"]
    assert [(i, o.ename, o.evalue) for i, o in errors_shown] == [
        (len(code) - 1, "ImageError", "image file not found: 'no-such-chart.png'")]

    bodies = chat_bodies(loopback)
    assert len(bodies) == 3  # the bad image sent nothing
    chart, diagram, both = (image_parts(body) for body in bodies)
    mime, _, figure = decode(chart[0]["url"])
    # 6 x 3.5 in at 100 dpi, cropped to the drawn area plus 0.1 in of padding (bbox_inches="tight")
    assert mime == "image/png" and 500 <= figure.width <= 620 and 300 <= figure.height <= 370
    assert [decode(p["url"])[2].size for p in diagram] == [(1152, 768)]  # 3000x2000 scaled for gpt-4o-mini
    assert [(decode(p["url"])[2].size, p["detail"]) for p in both] == [(figure.size, "auto"), ((512, 341), "low")]

    text = {i: "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
            for i, cell in enumerate(code)}
    table = next(t for t in text.values() if "sent" in t and "tokens" in t)
    assert table.splitlines() == [
        "gpt-4o        high  sent 1152x768 image/png    1,105 tokens",  # 3 x 2 tiles: 85 + 6 * 170
        "gpt-4o        low   sent 512x341 image/png       85 tokens",
        f"gpt-4o-mini   high  sent 1152x768 image/png   {2833 + 6 * 5667:,} tokens",
        "gpt-4o-mini   low   sent 512x341 image/png    2,833 tokens",
        f"gpt-4.1-mini  high  sent 1536x1024 image/png    {math.ceil(48 * 32 * 1.62):,} tokens",  # 48x32 patches
        f"gpt-4.1-mini  low   sent 512x341 image/png      {math.ceil(16 * 11 * 1.62):,} tokens",
    ]
    counted = next(t for t in text.values() if "prompt tokens:" in t).strip().splitlines()[-1]
    sent_tokens, counted_tokens = counted.removeprefix("prompt tokens: ").rstrip(")").split(
        " (counted before sending: ")
    assert sent_tokens == counted_tokens
    history = next(o.data["text/markdown"] for cell in code for o in cell.outputs
                   if o.output_type == "display_data" and "### user" in o.data.get("text/markdown", ""))
    assert history.count("<img ") == 2 and 'alt="figure"' in history


def test_one_source_alone_is_one_image_and_none_is_no_images(loopback, tmp_path):
    path = save(picture((300, 200)), tmp_path / "one.png")
    bot = make_bot(loopback)
    bot.ask("?", images=str(path), sink=NullSink())
    bot.ask("?", images=None, sink=NullSink())
    first, second = chat_bodies(loopback)
    assert len(image_parts(first)) == 1 and second["messages"][-1]["content"] == "?"
    with pytest.raises(errors.ImageError, match=r"^cannot use an object of type ndarray as an image \(for an "
                                                r"array of pixels: PIL.Image.fromarray\(array\)\): give a file"):
        import numpy

        bot.ask("?", images=numpy.zeros((4, 4, 3), dtype="uint8"), sink=NullSink())


def test_axes_send_their_figure_and_a_pil_image_alone_is_one_image():
    import matplotlib.figure

    figure = matplotlib.figure.Figure(figsize=(3, 2))
    axes = figure.add_subplot()
    axes.bar(["a", "b"], [3, 5])
    assert prepare_image(axes, model=GPT4O).url == prepare_image(figure, model=GPT4O).url
    refs = prepare_images(picture((40, 30)), model=GPT4O)
    assert [(r.width, r.height, r.source) for r in refs] == [(40, 30, "PIL image")]
