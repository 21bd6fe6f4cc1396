"""Heat-map PNGs of a matrix (a CKA map, a confusion matrix) drawn with Pillow alone, without Qt.

:func:`render_heatmap` draws the cells in a colour map (viridis, from nine anchor colours of
matplotlib's table, linearly interpolated), the row labels on the left, the column labels rotated
below, a title and a colour bar with its range. Undefined cells (NaN) are grey.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

_VIRIDIS = np.array([
    (68, 1, 84), (71, 44, 122), (59, 81, 139), (44, 113, 142), (33, 144, 141),
    (39, 173, 129), (92, 200, 99), (170, 220, 50), (253, 231, 37),
], dtype=np.float64)
NAN_COLOUR = (200, 200, 200)
_BACKGROUND = (255, 255, 255)
_INK = (20, 20, 20)


def colour_table(size: int = 256) -> np.ndarray:
    """(size, 3) uint8 colours of the viridis map from 0 to 1."""
    x = np.linspace(0.0, 1.0, size)
    anchors = np.linspace(0.0, 1.0, len(_VIRIDIS))
    table = np.stack([np.interp(x, anchors, _VIRIDIS[:, c]) for c in range(3)], axis=1)
    return np.round(table).astype(np.uint8)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)     # Pillow >= 10.1 (a scalable font)
    except (TypeError, OSError, AttributeError):
        return ImageFont.load_default()


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def render_heatmap(matrix, row_labels: Sequence[str], col_labels: Sequence[str], path: str | Path, *,
                   title: str = "", row_title: str = "", col_title: str = "", vmin: Optional[float] = None,
                   vmax: Optional[float] = None, cell: Optional[int] = None, annotate: Optional[bool] = None,
                   value_format: str = "{:.2f}") -> Path:
    """Write ``matrix`` (R, C) as a heat-map PNG at ``path`` and return the path.

    ``vmin``/``vmax`` default to the finite range (0..1 suits CKA). ``cell`` is the cell size in
    pixels (default: from the matrix size); ``annotate`` writes each value in its cell (default: when
    cells are large enough).
    """
    values = np.asarray(matrix, dtype=np.float64)
    if values.ndim != 2 or values.shape != (len(row_labels), len(col_labels)):
        raise ValueError(f"a heat map needs a matrix of {len(row_labels)}×{len(col_labels)}; got {values.shape}")
    rows, cols = values.shape
    finite = values[np.isfinite(values)]
    low = float(vmin) if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    high = float(vmax) if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    if not high > low:
        high = low + 1.0
    if cell is None:
        cell = int(max(8, min(48, 640 // max(rows, cols, 1))))
    if annotate is None:
        annotate = cell >= 30
    font = _font(max(9, min(13, cell // 2 + 3)))
    small = _font(10)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = max([_text_size(probe, str(t), font)[0] for t in row_labels] + [0]) + 8
    col_label_h = max([_text_size(probe, str(t), font)[0] for t in col_labels] + [0]) + 8
    text_h = _text_size(probe, "Ag", font)[1]
    title_h = text_h + 12 if title else 4
    side_title_w = text_h + 10 if row_title else 0
    bar_w, gap = 16, 16
    bar_label_w = max(_text_size(probe, value_format.format(v), small)[0] for v in (low, high)) + 6
    grid_x = side_title_w + label_w
    grid_y = title_h
    width = grid_x + cols * cell + gap + bar_w + bar_label_w + 8
    height = grid_y + rows * cell + col_label_h + (text_h + 10 if col_title else 4)
    height = max(height, grid_y + 120)
    image = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(image)
    table = colour_table()

    # the cells
    scaled = np.clip((values - low) / (high - low), 0.0, 1.0)
    for i in range(rows):
        for j in range(cols):
            v = values[i, j]
            colour = NAN_COLOUR if not math.isfinite(v) else tuple(int(c) for c in table[int(round(scaled[i, j] * 255))])
            x0, y0 = grid_x + j * cell, grid_y + i * cell
            draw.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=colour)
            if annotate and math.isfinite(v):
                text = value_format.format(v)
                tw, th = _text_size(draw, text, small)
                ink = _INK if scaled[i, j] > 0.6 else (255, 255, 255)
                draw.text((x0 + (cell - tw) / 2, y0 + (cell - th) / 2 - 1), text, fill=ink, font=small)

    # labels
    for i, label in enumerate(row_labels):
        tw, th = _text_size(draw, str(label), font)
        draw.text((grid_x - tw - 4, grid_y + i * cell + (cell - th) / 2 - 1), str(label), fill=_INK, font=font)
    for j, label in enumerate(col_labels):
        tw, th = _text_size(draw, str(label), font)
        strip = Image.new("RGB", (tw + 4, th + 6), _BACKGROUND)
        ImageDraw.Draw(strip).text((0, 0), str(label), fill=_INK, font=font)
        rotated = strip.rotate(90, expand=True)
        image.paste(rotated, (int(grid_x + j * cell + (cell - rotated.width) / 2),
                              grid_y + rows * cell + 4))
    if title:
        draw.text((grid_x, 4), title, fill=_INK, font=font)
    if col_title:
        tw, _ = _text_size(draw, col_title, font)
        draw.text((grid_x + (cols * cell - tw) / 2, grid_y + rows * cell + col_label_h + 2), col_title,
                  fill=_INK, font=font)
    if row_title:
        tw, th = _text_size(draw, row_title, font)
        strip = Image.new("RGB", (tw + 4, th + 6), _BACKGROUND)
        ImageDraw.Draw(strip).text((0, 0), row_title, fill=_INK, font=font)
        rotated = strip.rotate(90, expand=True)
        image.paste(rotated, (2, int(grid_y + max(0, (rows * cell - rotated.height) / 2))))

    # colour bar
    bar_x = grid_x + cols * cell + gap
    bar_h = max(rows * cell, 100)
    for y in range(bar_h):
        colour = tuple(int(c) for c in table[int(round((1 - y / max(bar_h - 1, 1)) * 255))])
        draw.line([(bar_x, grid_y + y), (bar_x + bar_w - 1, grid_y + y)], fill=colour)
    draw.rectangle([bar_x, grid_y, bar_x + bar_w - 1, grid_y + bar_h - 1], outline=_INK)
    for value, y in ((high, grid_y), (low, grid_y + bar_h - 10)):
        draw.text((bar_x + bar_w + 3, y), value_format.format(value), fill=_INK, font=small)

    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    image.save(partial, format="PNG")
    partial.replace(path)
    return path


def render_cka(result, path: str | Path) -> Path:
    """The heat map of a :class:`~.similarity.CKAResult`: teacher layers down, student layers across, 0..1."""
    return render_heatmap(
        result.matrix, [l.label for l in result.teacher_layers], [l.label for l in result.student_layers], path,
        title=f"linear CKA, {result.probe_size} probe images", row_title=result.teacher_name,
        col_title=result.student_name, vmin=0.0, vmax=1.0)


def render_confusion(evaluation, path: str | Path, title: str = "") -> Path:
    """The confusion matrix of an :class:`~.evaluation.Evaluation`, each row as a fraction of its class."""
    counts = evaluation.confusion.astype(np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        fractions = np.where(totals > 0, counts / np.maximum(totals, 1), np.nan)
    names = list(evaluation.class_names)
    return render_heatmap(
        fractions, names, names, path, vmin=0.0, vmax=1.0,
        title=title or f"confusion (row-normalised), top-1 {evaluation.top1:.1f}%",
        row_title="true class", col_title="predicted class")


__all__ = ["colour_table", "render_cka", "render_confusion", "render_heatmap"]
