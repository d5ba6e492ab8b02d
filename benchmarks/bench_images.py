"""Image preparation: what scaling before upload saves, and what it costs in time.

For each realistic source (a 12 MP phone photo, a 3000x2000 PNG screenshot, a matplotlib figure)
it compares ``images.prepare_image`` with the common recipe, base64 of the file as it is
(``base64.b64encode(open(path, "rb").read())``): bytes put on the wire, time to prepare, and the
tokens billed. The tokens are equal by construction (the provider scales the same way), so the
saving is upload size, not tokens.

    python benchmarks/bench_images.py            # full run
    python benchmarks/bench_images.py --quick    # fewer repeats, for a smoke test
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def photo(size: tuple[int, int]):
    """Photo-like pixels: a colour gradient with sensor-like noise (compresses like a real photo)."""
    from PIL import Image

    gradient = Image.linear_gradient("L").resize(size)
    noise = Image.effect_noise(size, 24)
    base = Image.merge("RGB", (gradient, gradient.rotate(90).resize(size), Image.new("L", size, 120)))
    return Image.blend(base, Image.merge("RGB", (noise, noise, noise)), 0.35)


def screenshot(size: tuple[int, int]):
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    for row in range(0, size[1], 40):
        draw.text((20, row), f"line {row // 40}: the quick brown fox jumps over the lazy dog " * 3,
                  fill=(30, 30, 30), font_size=24)
    return image


def figure_png(path: Path) -> None:
    import matplotlib.figure
    import numpy as np

    figure = matplotlib.figure.Figure(figsize=(8, 5), dpi=200)
    ax = figure.add_subplot()
    x = np.linspace(0, 10, 400)
    for k in range(5):
        ax.plot(x, np.sin(x + k) * (k + 1), label=f"series {k}")
    ax.legend()
    figure.savefig(path, format="png")


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def measure(name: str, path: Path, model: str, repeats: int) -> dict:
    from PIL import Image

    from jupyter_llmchat.core.images import prepare_image
    from jupyter_llmchat.core.models import model_info
    from jupyter_llmchat.core.tokens import image_tokens

    info = model_info(model)
    with Image.open(path) as original:
        width, height = original.size
    ours_s, ref = timed(lambda: prepare_image(str(path), model=info), repeats)
    naive_s, naive = timed(lambda: base64.b64encode(path.read_bytes()), repeats)
    return {
        "source": name, "model": model, "pixels": f"{width}x{height}", "file_bytes": path.stat().st_size,
        "sent_pixels": f"{ref.width}x{ref.height}", "sent_base64_bytes": len(ref.url),
        "naive_base64_bytes": len(naive), "upload_saved": round(1 - len(ref.url) / len(naive), 3),
        "prepare_ms": round(ours_s * 1000, 1), "naive_ms": round(naive_s * 1000, 1),
        "tokens_sent": image_tokens(ref.width, ref.height, "auto", info.image_tokens),
        "tokens_if_unscaled": image_tokens(width, height, "auto", info.image_tokens),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    repeats = 2 if args.quick else 7
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        photo((4032, 3024)).save(folder / "photo.jpg", quality=92)
        screenshot((3000, 2000)).save(folder / "screen.png")
        figure_png(folder / "figure.png")
        rows = [measure(name, folder / file, model, repeats)
                for name, file in (("12 MP photo (JPEG)", "photo.jpg"), ("3000x2000 screenshot (PNG)", "screen.png"),
                                   ("matplotlib figure 1600x1000 (PNG)", "figure.png"))
                for model in ("gpt-4o", "gpt-4.1-mini")]
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
