"""The numbers behind the attention view: colour bounds, mosaics, the tile grid. Pure numpy, no Qt.

A snapshot (:class:`featdistill_core.events.AttentionSnapshot`) holds, for each distilled pair,
teacher and student maps of shape (N, H, W) on N probe images (N, h, w, 3). The view shows each pair
as four columns — probe image, teacher, student, difference — each a vertical *mosaic* of the chosen
probes: every tile stretched (nearest-neighbour) to a common number of rows (:func:`tile_rows`) with
thin bands between tiles (:func:`gap_rows`), so the panels of a row line up pixel for pixel.

Colour bounds are robust (:data:`ROBUST_PERCENTILE`) and rounded up with
:func:`app.rounding.round_up`, so colour bars read well.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from app.rounding import round_up

if TYPE_CHECKING:
    from featdistill_core import AttentionSnapshot

ROLES = ("image", "teacher", "student", "difference")
ROBUST_PERCENTILE = 99.5
MIN_TILE_ROWS = 24         # a mosaic tile has at least this many rows, so one gap row stays thin
MAX_TILE_ROWS = 512        # beyond this common multiple of the map heights, stretch to the tallest
GAP_FRACTION = 1 / 24      # white band between two tiles, as a fraction of a tile's height


# ---- values -------------------------------------------------------------------------------------


def display_map(values: np.ndarray) -> np.ndarray:
    """A map ready for an ImageItem: C-contiguous float32, non-finite values replaced by 0."""
    out = np.ascontiguousarray(values, dtype=np.float32)
    if not np.isfinite(out).all():
        out = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
    return out


def display_image(image: np.ndarray) -> np.ndarray:
    """A probe image (H, W, 3) float in [0, 1] as C-contiguous uint8 RGB."""
    return np.ascontiguousarray(np.clip(np.nan_to_num(image) * 255.0 + 0.5, 0, 255).astype(np.uint8))


def mean_abs_difference(teacher: np.ndarray, student: np.ndarray) -> float:
    """mean |student − teacher| over all probe images and positions."""
    return float(np.mean(np.abs(student.astype(np.float64) - teacher.astype(np.float64))))


def robust_bound(values: np.ndarray) -> float:
    """The :data:`ROBUST_PERCENTILE`-th percentile of the finite values (numpy's linear interpolation),
    1.0 when there is none. ``np.partition`` rather than ``np.nanpercentile``: no full sort, and no
    import of ``numpy.ma`` (about 20 ms) on the GUI thread at the first snapshot."""
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if not values.size:
        return 1.0
    position = (values.size - 1) * ROBUST_PERCENTILE / 100.0
    below = int(math.floor(position))
    above = min(below + 1, values.size - 1)
    part = np.partition(values, [below, above])
    return float(part[below] + (part[above] - part[below]) * (position - below))


def snapshot_bounds(snapshot: AttentionSnapshot) -> tuple[float, float]:
    """Robust colour bounds of one snapshot, rounded up: ``(hi, d)``.

    ``hi`` (the shared teacher/student scale) is the 99.5th percentile of the TEACHER maps: the
    teacher is the target and does not change while the student learns, so the scale stays put and
    a student map hotter than the teacher's saturates rather than washing the teacher out. ``d`` (the
    difference scale) is the 99.5th percentile of |student − teacher|.
    """
    if not snapshot.pairs:
        return 1.0, 1.0
    teacher = np.concatenate([np.abs(p.teacher).ravel() for p in snapshot.pairs])
    diffs = np.concatenate([np.abs(p.student - p.teacher).ravel() for p in snapshot.pairs])
    return round_up(robust_bound(teacher)), round_up(robust_bound(diffs))


def nice_ticks(low: float, high: float, most: int = 6) -> list[float]:
    """Round values (multiples of 1, 2, 2.5 or 5 × 10^k) within ``[low, high]``, at most ``most`` of them."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low]
    step = round_up((high - low) / most)
    for factor in (1.0, 2.0, 2.5, 5.0, 10.0):
        candidate = round_up(step * factor)
        if (high - low) / candidate <= most:
            step = candidate
            break
    first = math.ceil(low / step - 1e-9)
    last = math.floor(high / step + 1e-9)
    return [round(k * step, 12) + 0.0 for k in range(first, last + 1)]


def check_snapshot(snapshot: AttentionSnapshot) -> None:
    """Raise ValueError (one line) when a snapshot's arrays do not fit together."""
    images = np.asarray(snapshot.images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"snapshot at step {snapshot.step}: images must have shape (N, H, W, 3), "
                         f"got {images.shape}")
    count = images.shape[0]
    for pair in snapshot.pairs:
        teacher, student = np.asarray(pair.teacher), np.asarray(pair.student)
        if teacher.ndim != 3 or teacher.shape != student.shape:
            raise ValueError(f"snapshot at step {snapshot.step}, pair {pair.name!r}: teacher and student maps "
                             f"must both have shape (N, H, W), got {teacher.shape} and {student.shape}")
        if teacher.shape[0] != count:
            raise ValueError(f"snapshot at step {snapshot.step}, pair {pair.name!r}: maps for {teacher.shape[0]} "
                             f"probe images but {count} images")


# ---- mosaics --------------------------------------------------------------------------------------


def tile_rows(heights: Iterable[int]) -> int:
    """Rows of one probe's tile in the mosaics, shared by every column of the view.

    The least common multiple of the native heights (probe image and every map), so each one is
    stretched by a whole number, times the smallest factor reaching :data:`MIN_TILE_ROWS`. When
    that multiple exceeds :data:`MAX_TILE_ROWS`, the tallest height is used instead (nearest-
    neighbour rows then differ in thickness by one).
    """
    heights = [max(1, int(h)) for h in heights]
    rows = math.lcm(*heights)
    if rows > MAX_TILE_ROWS:
        rows = max(heights)
    return rows * math.ceil(MIN_TILE_ROWS / rows)


def gap_rows(rows: int) -> int:
    """Rows of the band between two tiles of ``rows`` rows: ``max(1, round(rows · GAP_FRACTION))``."""
    return max(1, round(rows * GAP_FRACTION))


def stretch_rows(tiles: np.ndarray, rows: int) -> np.ndarray:
    """Tiles ``(n, h, ...)`` stretched to ``(n, rows, ...)``: row ``j`` repeats native row ``⌊j·h/rows⌋``."""
    source = (np.arange(rows) * tiles.shape[1]) // rows
    return tiles[:, source]


def mosaic(tiles: np.ndarray, rows: int, gap: int, fill) -> np.ndarray:
    """Tiles ``(n, h, w[, 3])`` stacked top to bottom, each stretched to ``rows`` rows, with ``gap``
    rows of ``fill`` between two tiles: shape ``(n·rows + (n − 1)·gap, w[, 3])``, C-contiguous."""
    n = tiles.shape[0]
    out = np.full((n, rows + gap, *tiles.shape[2:]), fill, dtype=tiles.dtype)
    out[:, :rows] = stretch_rows(tiles, rows)
    out = out.reshape(n * (rows + gap), *tiles.shape[2:])
    return out[: max(0, out.shape[0] - gap)]


def mosaic_tile(image: np.ndarray, index: int, rows: int, gap: int, height: int) -> np.ndarray:
    """Tile ``index`` cut out of a :func:`mosaic` and brought back to its native ``height`` rows."""
    block = image[index * (rows + gap): index * (rows + gap) + rows]
    return block[(np.arange(height) * rows + height - 1) // height]


@dataclass(frozen=True)
class MosaicGrid:
    """Where the tiles sit, in probe-image pixels: column ``c`` starts at ``x = c·(width + gap)``,
    probe row ``k`` at ``y = k·(height + gap)``; every mosaic has ``rows`` rows per tile and ``gap_rows``
    between tiles, so ``gap = height · gap_rows / rows``."""

    height: int
    width: int
    rows: int
    gap_rows: int
    probes: int

    @classmethod
    def of(cls, snap, probes: int) -> "MosaicGrid":
        height, width = (int(s) for s in snap.images.shape[1:3])
        rows = tile_rows([height, *(p.teacher.shape[1] for p in snap.pairs)])
        return cls(height, width, rows, gap_rows(rows), probes)

    @property
    def gap(self) -> float:
        return self.height * self.gap_rows / self.rows

    def column_x(self, column: int) -> float:
        return column * (self.width + self.gap)

    def row_y(self, row: int) -> float:
        return row * (self.height + self.gap)

    def size(self) -> tuple[float, float]:
        """Width and height of the whole grid (four columns, ``probes`` rows)."""
        return (len(ROLES) * self.width + (len(ROLES) - 1) * self.gap,
                self.probes * self.height + max(0, self.probes - 1) * self.gap)
