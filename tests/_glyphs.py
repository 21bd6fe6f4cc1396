"""A generated image folder of printed digits: a stand-in for a small scanned-digit folder.

``make_glyph_folder(root, count)`` writes ``root/<digit>/<n>.png``: each a 28×28 grey image of one
digit drawn with Pillow's built-in font at a random size, position, slant and stroke width, on a
random grey level, with a little blur and noise. A teacher learns it to ~99 %; a small student in
a few epochs does not, which is where a wrongly weighted distillation term shows (README, "Loss
balance"). Nothing is downloaded: the font ships with Pillow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SIZE = 28


def make_glyph_folder(root, count: int = 1258, seed: int = 0) -> Path:
    root = Path(root)
    rng = np.random.default_rng(seed)
    fonts = {size: ImageFont.load_default(size=size) for size in range(14, 23)}
    for digit in range(10):
        (root / str(digit)).mkdir(parents=True, exist_ok=True)
    for n in range(count):
        digit = n % 10
        background = int(rng.integers(0, 90))
        ink = int(rng.integers(170, 256))
        canvas = Image.new("L", (SIZE * 2, SIZE * 2), background)
        draw = ImageDraw.Draw(canvas)
        font = fonts[int(rng.integers(14, 23))]
        x, y = SIZE + rng.uniform(-5, 5), SIZE + rng.uniform(-5, 5)
        draw.text((x, y), str(digit), fill=ink, font=font, anchor="mm", stroke_width=int(rng.integers(0, 2)),
                  stroke_fill=ink)
        canvas = canvas.rotate(float(rng.uniform(-20, 20)), resample=Image.Resampling.BILINEAR, fillcolor=background)
        canvas = canvas.transform(canvas.size, Image.Transform.AFFINE,
                                  (1, float(rng.uniform(-0.3, 0.3)), 0, 0, 1, 0),
                                  resample=Image.Resampling.BILINEAR, fillcolor=background)
        canvas = canvas.crop((SIZE // 2, SIZE // 2, SIZE // 2 + SIZE, SIZE // 2 + SIZE))
        canvas = canvas.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.0, 1.0))))
        pixels = np.asarray(canvas, dtype=np.float32) + rng.normal(0, 18, (SIZE, SIZE))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / str(digit) / f"{n:05d}.png")
    return root
