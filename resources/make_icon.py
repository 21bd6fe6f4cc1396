"""Draw the application icon: two overlapping attention heat maps, the teacher's and the student's.

The teacher's map sits behind, up and to the left; the student's map overlaps it in front, down and
to the right, with a similar but blurrier blob: the student learning to look where the teacher looks.
Each map is a small grid of cells coloured by a Gaussian blob, ``a(x, y) = exp(-((x-cx)^2 + (y-cy)^2)
/ (2 sigma^2))``, through an inferno-like colour ramp, so the icon stays legible at 16 px.

Run it to (re)write ``icon.png`` (256 px), ``icon.ico`` (16-256 px) and ``icon.icns`` next to this file:

    python resources/make_icon.py

Only Pillow is needed; the files are committed, so a build never has to run this.
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
SIZE = 256
GRID = 6  # cells per side of each heat map

# A short inferno-like ramp: dark purple -> red -> orange -> pale yellow.
RAMP = [(0.0, (28, 12, 68)), (0.35, (120, 28, 109)), (0.6, (212, 72, 66)), (0.8, (250, 150, 30)), (1.0, (252, 240, 160))]


def ramp_colour(value: float) -> tuple[int, int, int]:
    """Linear interpolation in ``RAMP`` for ``value`` in [0, 1]."""
    value = min(1.0, max(0.0, value))
    for (lo, c0), (hi, c1) in zip(RAMP, RAMP[1:]):
        if value <= hi:
            t = (value - lo) / (hi - lo)
            return tuple(round(a + (b - a) * t) for a, b in zip(c0, c1))
    return RAMP[-1][1]


def blob(i: int, j: int, centre: tuple[float, float], sigma: float) -> float:
    """Gaussian attention at cell (i, j), centre and sigma in cell units."""
    dx, dy = i - centre[0], j - centre[1]
    return math.exp(-(dx * dx + dy * dy) / (2 * sigma * sigma))


def draw_map(draw: ImageDraw.ImageDraw, origin: tuple[int, int], side: int, centre: tuple[float, float],
             sigma: float, outline: tuple[int, int, int]) -> None:
    """One heat map: a framed GRID x GRID square of coloured cells with its top-left at ``origin``."""
    x0, y0 = origin
    border = max(6, side // 22)
    draw.rounded_rectangle((x0, y0, x0 + side, y0 + side), radius=side // 10, fill=outline)
    inner = side - 2 * border
    cell = inner / GRID
    for j in range(GRID):
        for i in range(GRID):
            colour = ramp_colour(blob(i, j, centre, sigma))
            left = x0 + border + round(i * cell)
            top = y0 + border + round(j * cell)
            right = x0 + border + round((i + 1) * cell) - 1
            bottom = y0 + border + round((j + 1) * cell) - 1
            draw.rectangle((left, top, right, bottom), fill=colour)


def make_icon(size: int = SIZE) -> Image.Image:
    """The icon as an RGBA image of ``size`` x ``size`` pixels (drawn at 256 px and resized)."""
    image = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    side = 160
    # Teacher: back, top-left, a sharp blob; student: front, bottom-right, a softer blob nearby.
    draw_map(draw, (12, 12), side, centre=(2.0, 2.2), sigma=1.1, outline=(40, 44, 52))
    draw_map(draw, (SIZE - side - 12, SIZE - side - 12), side, centre=(2.4, 2.5), sigma=1.5, outline=(245, 245, 245))
    if size != SIZE:
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    return image


def main() -> None:
    icon = make_icon()
    icon.save(HERE / "icon.png")
    icon.save(HERE / "icon.ico", sizes=[(16, 16), (24, 24), (32, 32), (48, 48), (64, 64), (128, 128), (256, 256)])
    icon.resize((512, 512), Image.Resampling.LANCZOS).save(HERE / "icon.icns")
    print(f"wrote icon.png, icon.ico, icon.icns in {HERE}")


if __name__ == "__main__":
    main()
