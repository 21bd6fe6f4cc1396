"""The attention-map viewer: teacher, student and their difference on a few probe images.

For every distilled pair of a snapshot the view shows one row per selected probe image::

    probe image | teacher map | student map | difference (student − teacher)

Teacher and student maps come from the trainer already brought to one spatial size and scaled to
mean 1 over their positions (see :class:`featdistill_core.events.PairMaps`), so they share ONE colour
scale, ``[0, hi]``, set by the teacher's maps; the difference has a symmetric diverging scale
``[−d, d]``. Both bounds are robust (99.5th percentile, rounded up to a round number) and only ever
grow over the snapshots received, so replaying the timeline compares like with like: as the student
learns, the difference fades to white. Each pair's header gives the mean |student − teacher| over all probe images.

Every map is stretched over the probe image's extent (nearest-neighbour, so a 8×8 map shows its
true resolution) and the panels of a row line up pixel for pixel.

Drawing stays cheap however many probes and pairs are shown: each pair is ONE ViewBox holding four
images, one per column, each a vertical mosaic of the selected probes composed in numpy (every tile
stretched to a common number of rows, white bands between tiles). Row labels and column titles are
the ticks of two axes linked to that ViewBox, so they stay aligned at any size. The items are built
once per layout (pairs and image size); a new snapshot only hands new arrays to the same items.

A timeline slider replays every snapshot received; at its right end the view follows new snapshots
("live"), anywhere else it stays put. The view can be exported as a PNG, an animated GIF of the whole
evolution or a numbered PNG sequence.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from app import colormaps
from featdistill_core.events import AttentionSnapshot, PairMaps

ROLES = ("image", "teacher", "student", "difference")
DEFAULT_PROBES = (0, 1, 2, 3)
ROBUST_PERCENTILE = 99.5
MIN_CELL_PX = 72           # an image panel never gets narrower than this (the view scrolls instead)
MAX_CELL_PX = 240          # nor wider: beyond this a 32×32 probe image only gets blurrier
ROW_LABEL_PX = 64          # width of the "probe k / class c" column
TITLE_PX = 30
HEADER_PX = 24
COLUMN_TITLE_PX = 20
BAR_ROW_PX = 64
SPACING_PX = 4
MAX_GIF_FPS = 50
LIVE_RENDER_INTERVAL_S = 0.2   # following a run, the view draws at most 5 snapshots a second
MIN_TILE_ROWS = 24         # a mosaic tile has at least this many rows, so one gap row stays thin
MAX_TILE_ROWS = 512        # beyond this common multiple of the map heights, stretch to the tallest
GAP_FRACTION = 1 / 24      # white band between two tiles, as a fraction of a tile's height

# --------------------------------------------------------------------------------------------------
# pure helpers (no Qt)


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^k that is ≥ ``value`` (a colour-bar bound that reads well)."""
    if not math.isfinite(value) or value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if step * power >= value * (1 - 1e-12):
            return step * power
    return 10.0 * power


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
    return nice_ceiling(robust_bound(teacher)), nice_ceiling(robust_bound(diffs))


def nice_ticks(low: float, high: float, most: int = 6) -> list[float]:
    """Round values (multiples of 1, 2, 2.5 or 5 × 10^k) within ``[low, high]``, at most ``most`` of them."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low]
    step = nice_ceiling((high - low) / most)
    for factor in (1.0, 2.0, 2.5, 5.0, 10.0):
        candidate = nice_ceiling(step * factor)
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


def qimage_to_pil(image: QtGui.QImage):
    """A copy of ``image`` as a Pillow RGB image."""
    from PIL import Image

    rgba = image.convertToFormat(QtGui.QImage.Format.Format_RGBA8888)
    width, height = rgba.width(), rgba.height()
    buffer = np.frombuffer(rgba.constBits(), dtype=np.uint8, count=rgba.sizeInBytes())
    array = buffer.reshape(height, rgba.bytesPerLine())[:, : width * 4].reshape(height, width, 4)
    return Image.fromarray(array[..., :3].copy(), "RGB")


def _same_size(frames: list) -> list:
    """Frames padded with white to the largest width and height (the layout can change over a run)."""
    from PIL import Image

    width = max(frame.width for frame in frames)
    height = max(frame.height for frame in frames)
    padded = []
    for frame in frames:
        if frame.size != (width, height):
            canvas = Image.new("RGB", (width, height), colormaps.BACKGROUND)
            canvas.paste(frame, (0, 0))
            frame = canvas
        padded.append(frame)
    return padded


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


# --------------------------------------------------------------------------------------------------
# the widget's parts


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
    def of(cls, snap: AttentionSnapshot, probes: int) -> "MosaicGrid":
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


# Static parts (labels, bars, frames) are painted once into a pixmap and blitted on later repaints.
_CACHED = QtWidgets.QGraphicsItem.CacheMode.DeviceCoordinateCache


class _TextLine(pg.GraphicsWidget):
    """One line of rich text of fixed height: changing it repaints the line, never the layout."""

    def __init__(self, height: int, *, size_pt: float, bold: bool = False, justify: str = "left"):
        super().__init__()
        self.text = ""
        self._justify = justify
        self._item = QtWidgets.QGraphicsTextItem(self)
        font = self._item.font()
        font.setPointSizeF(size_pt)
        font.setBold(bold)
        self._item.setFont(font)
        self._item.setDefaultTextColor(QtGui.QColor(colormaps.FOREGROUND))
        self._item.setCacheMode(_CACHED)
        self.setFixedHeight(height)
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed)

    def setText(self, text: str) -> None:
        if text != self.text:
            self.text = text
            self._item.setHtml(text)
            self._place()

    def resizeEvent(self, event) -> None:
        self._place()

    def _place(self) -> None:
        box = self._item.boundingRect()
        x = max(0.0, (self.width() - box.width()) / 2) if self._justify == "center" else 0.0
        self._item.setPos(x, (self.height() - box.height()) / 2)


def _label_axis(orientation: str, view: pg.ViewBox) -> pg.AxisItem:
    """An axis that shows only text labels at fixed places of ``view`` (no line, no ticks)."""
    invisible = pg.mkPen((0, 0, 0, 0))     # not mkPen(None): the axis copies pens by colour, losing NoPen
    axis = pg.AxisItem(orientation, linkView=view, pen=invisible, tickPen=invisible,
                       textPen=pg.mkPen(colormaps.FOREGROUND), maxTickLength=0)
    font = QtGui.QFont()
    font.setPointSizeF(9)
    axis.setStyle(tickLength=0, tickAlpha=0, tickFont=font, tickTextOffset=6, autoExpandTextSpace=False,
                  autoReduceTextSpace=False, hideOverlappingLabels=False)
    axis.setCacheMode(_CACHED)
    if orientation in ("left", "right"):
        axis.setWidth(ROW_LABEL_PX)
    else:
        axis.setHeight(COLUMN_TITLE_PX)
    return axis


class _ColorBar(pg.GraphicsWidget):
    """A horizontal colour bar painted in one go: the colour map over its levels, round ticks, a caption.

    Lighter than ``pg.ColorBarItem`` (a whole PlotItem with four axes and menus, about 11 ms to
    build); the images it describes get the same map as a :data:`colormaps.LUT_SIZE`-entry table.
    """

    BAR_PX = 12
    MARGIN_PX = 10             # room for the end labels

    def __init__(self, cmap: pg.ColorMap, caption: str):
        super().__init__()
        self.cmap = cmap
        self.lut = colormaps.lookup_table(cmap)
        self._gradient = cmap.getGradient(QtCore.QPointF(0, 0), QtCore.QPointF(1, 0))
        self._gradient.setCoordinateMode(QtGui.QGradient.CoordinateMode.ObjectBoundingMode)
        self.caption = caption
        self._levels = (0.0, 1.0)
        self._font = QtGui.QFont()
        self._font.setPointSizeF(9)
        self.setFixedHeight(BAR_ROW_PX)
        self.setCacheMode(_CACHED)

    def levels(self) -> tuple[float, float]:
        return self._levels

    def setLevels(self, levels: tuple[float, float]) -> None:
        self._levels = (float(levels[0]), float(levels[1]))
        self.update()

    def paint(self, painter: QtGui.QPainter, *args) -> None:
        low, high = self._levels
        bar = QtCore.QRectF(self.MARGIN_PX, 2, max(1.0, self.width() - 2 * self.MARGIN_PX), self.BAR_PX)
        painter.fillRect(bar, QtGui.QBrush(self._gradient))
        painter.setPen(pg.mkPen(colormaps.FOREGROUND))
        painter.drawRect(bar)
        painter.setFont(self._font)
        metrics = QtGui.QFontMetricsF(self._font)
        text_top = bar.bottom() + 5
        for value in nice_ticks(low, high):
            x = bar.left() + (value - low) / (high - low) * bar.width()
            painter.drawLine(QtCore.QPointF(x, bar.bottom()), QtCore.QPointF(x, bar.bottom() + 3))
            label = f"{value:g}"
            width = metrics.horizontalAdvance(label)
            painter.drawText(QtCore.QRectF(x - width / 2 - 2, text_top, width + 4, metrics.height()),
                             QtCore.Qt.AlignmentFlag.AlignCenter, label)
        caption_top = text_top + metrics.height() + 3
        painter.drawText(QtCore.QRectF(0, caption_top, self.width(), metrics.height() + 2),
                         QtCore.Qt.AlignmentFlag.AlignCenter, self.caption)


class _PairBlock:
    """One distilled pair: a header line, column titles, row labels and one ViewBox with four mosaics."""

    def __init__(self, pair: PairMaps):
        self.name = pair.name
        self.map_height = int(pair.teacher.shape[1])
        self.header = _TextLine(HEADER_PX, size_pt=10)
        self.view = pg.ViewBox(lockAspect=True, invertY=True, enableMouse=False, enableMenu=False, defaultPadding=0.0)
        self.row_axis = _label_axis("left", self.view)
        self.column_axis = _label_axis("top", self.view)
        self.column_titles = ("probe image", f"teacher · {pair.teacher_layer}", f"student · {pair.student_layer}",
                              "difference")
        map_shape = pair.teacher.shape[1:]
        self.items: dict[str, pg.ImageItem] = {}
        for role in ROLES:
            item = pg.ImageItem(axisOrder="row-major")
            if role == "image":
                item.setImage(np.full((1, 1, 3), 255, np.uint8), autoLevels=False, levels=(0, 255))
            else:
                item.setImage(np.zeros(map_shape, np.float32), autoLevels=False, levels=(0.0, 1.0))
            self.view.addItem(item, ignoreBounds=True)
            self.items[role] = item
        self.bands = QtWidgets.QGraphicsPathItem()           # white bands over the mosaics' gap rows
        self.bands.setPen(QtGui.QPen(QtCore.Qt.PenStyle.NoPen))
        self.bands.setBrush(pg.mkBrush(colormaps.BACKGROUND))
        self.bands.setZValue(1)
        self.frames = QtWidgets.QGraphicsPathItem()          # a thin frame around every tile
        frame_pen = pg.mkPen(colormaps.CELL_BORDER)
        frame_pen.setCosmetic(True)
        self.frames.setPen(frame_pen)
        self.frames.setZValue(2)
        self.frames.setCacheMode(_CACHED)
        self.view.addItem(self.bands, ignoreBounds=True)
        self.view.addItem(self.frames, ignoreBounds=True)
        self.grid: MosaicGrid | None = None

    def arrange(self, grid: MosaicGrid, row_labels: Sequence[str]) -> None:
        """Place labels, bands and frames for ``grid`` (when the probes shown change)."""
        self.grid = grid
        self.row_axis.setTicks([[(grid.row_y(k) + grid.height / 2, text) for k, text in enumerate(row_labels)], []])
        self.column_axis.setTicks([[(grid.column_x(c) + grid.width / 2, title)
                                    for c, title in enumerate(self.column_titles)], []])
        bands, frames = QtGui.QPainterPath(), QtGui.QPainterPath()
        for c in range(len(ROLES)):
            x = grid.column_x(c)
            for k in range(grid.probes):
                frames.addRect(QtCore.QRectF(x, grid.row_y(k), grid.width, grid.height))
                if k + 1 < grid.probes:
                    bands.addRect(QtCore.QRectF(x, grid.row_y(k) + grid.height, grid.width, grid.gap))
        self.bands.setPath(bands)
        self.frames.setPath(frames)
        width, height = grid.size()
        self.view.setRange(QtCore.QRectF(0, 0, width, height), padding=0.0)

    def show(self, pair: PairMaps, probes: Sequence[int], images: np.ndarray, header: str) -> None:
        """Hand this snapshot's mosaics to the four images (same items, new arrays)."""
        grid = self.grid
        teacher = display_map(pair.teacher[list(probes)])
        student = display_map(pair.student[list(probes)])
        arrays = {
            "image": images,
            "teacher": mosaic(teacher, grid.rows, grid.gap_rows, 0.0),
            "student": mosaic(student, grid.rows, grid.gap_rows, 0.0),
            "difference": mosaic(student - teacher, grid.rows, grid.gap_rows, 0.0),
        }
        _, height = grid.size()
        for column, role in enumerate(ROLES):
            item = self.items[role]
            reshaped = item.image is None or item.image.shape[:2] != arrays[role].shape[:2]
            item.setImage(arrays[role], autoLevels=False)
            if reshaped:
                item.setRect(QtCore.QRectF(grid.column_x(column), 0.0, grid.width, height))
        self.header.setText(header)

    def tile(self, role: str, row: int) -> np.ndarray:
        """What row ``row`` of column ``role`` shows, at the array's native size."""
        grid = self.grid
        native = grid.height if role == "image" else self.map_height
        return mosaic_tile(self.items[role].image, row, grid.rows, grid.gap_rows, native)


# --------------------------------------------------------------------------------------------------
# the widget


class AttentionView(QtWidgets.QWidget):
    """Teacher/student attention maps and their difference, per distilled pair, over a timeline."""

    snapshotShown = QtCore.Signal(int)      # index of the snapshot now on screen

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("attentionView")
        self._snapshots: list[AttentionSnapshot] = []
        self._current = -1
        self._probe_indices: list[int] = list(DEFAULT_PROBES)
        self._map_hi = 0.0                 # shared teacher/student bound, grows with the snapshots
        self._diff_bound = 0.0             # symmetric difference bound
        self._first_mean_diff: dict[str, float] = {}
        self._layout_key: tuple | None = None     # pairs and image size the items were built for
        self._rows_key: tuple | None = None       # probes (and their labels) the blocks are arranged for
        self._blocks: dict[str, _PairBlock] = {}
        self._headers: dict[str, _TextLine] = {}
        self._grid: MosaicGrid | None = None
        self._shown_probes_now: list[int] = []
        self._bar_levels: tuple[float, float] | None = None
        self._row_labels: list[str] = []
        self._drawn: AttentionSnapshot | None = None  # the snapshot the blocks show (exports draw others)
        self._pending: list[PairMaps] = []           # pairs whose blocks are still to be built
        self._build_timer = QtCore.QTimer(self)      # builds them one per event-loop turn
        self._build_timer.setSingleShot(True)
        self._build_timer.setInterval(0)
        self._build_timer.timeout.connect(self._build_next)
        self._render_due = False                     # the current snapshot is still to be drawn
        self._render_timer = QtCore.QTimer(self)     # draws it on the next event-loop turn
        self._render_timer.setSingleShot(True)
        self._render_timer.timeout.connect(self._render_pending)
        self._rendered_at = -math.inf                # time.monotonic() of the last drawing

        # timeline
        self.timeline = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.timeline.setObjectName("attentionTimeline")
        self.timeline.setToolTip("Replay the snapshots; at the right end the view follows new ones")
        self.timeline.setEnabled(False)
        self.timeline_label = QtWidgets.QLabel("no snapshot yet")
        self.timeline_label.setObjectName("attentionTimelineLabel")
        self.timeline_label.setMinimumWidth(200)
        self.live_button = QtWidgets.QToolButton()
        self.live_button.setObjectName("attentionLive")
        self.live_button.setText("● live")
        self.live_button.setCheckable(True)
        self.live_button.setEnabled(False)
        self.live_button.setToolTip("Follow new snapshots as they arrive (jumps to the newest)")

        # probe selector
        self.probe_list = QtWidgets.QListWidget()
        self.probe_list.setObjectName("attentionProbes")
        self.probe_list.setFlow(QtWidgets.QListView.Flow.LeftToRight)
        self.probe_list.setWrapping(False)
        self.probe_list.setFixedHeight(44)
        self.probe_list.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.probe_list.setToolTip("Tick the probe images to show")

        # exports
        self.export_button = QtWidgets.QToolButton()
        self.export_button.setObjectName("attentionExport")
        self.export_button.setText("Export")
        self.export_button.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.export_button.setPopupMode(QtWidgets.QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QtWidgets.QMenu(self.export_button)
        self.png_action = menu.addAction("This snapshot as PNG…")
        self.gif_action = menu.addAction("All snapshots as animated GIF…")
        self.sequence_action = menu.addAction("All snapshots as PNG sequence…")
        self.export_button.setMenu(menu)
        self.export_button.setEnabled(False)

        # the picture
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setObjectName("attentionGraphics")
        self.graphics.setBackground(colormaps.BACKGROUND)
        self.graphics.ci.setSpacing(SPACING_PX)
        # built once and kept: the title line and the two colour bars (the pairs' blocks come and go)
        self._title = _TextLine(TITLE_PX, size_pt=11, bold=True, justify="center")
        self._map_bar = _ColorBar(colormaps.sequential_colormap(), "attention, teacher and student (mean 1 per map)")
        self._diff_bar = _ColorBar(colormaps.diverging_colormap(), "student − teacher")
        self._bar_spacers = (pg.GraphicsWidget(), pg.GraphicsWidget())   # under the image column, between bars
        self.graphics.ci.addItem(self._title, row=0, col=0, colspan=2)
        self._bars = self.graphics.ci.addLayout(row=1, col=1)
        self._bars.setSpacing(0)
        self._bars.setContentsMargins(0, 0, 0, 0)
        for col, item in enumerate((self._bar_spacers[0], self._map_bar, self._bar_spacers[1], self._diff_bar)):
            self._bars.addItem(item, row=0, col=col)
        self.scroll = QtWidgets.QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setWidget(self.graphics)
        self.scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)

        top = QtWidgets.QHBoxLayout()
        top.addWidget(QtWidgets.QLabel("snapshot"))
        top.addWidget(self.timeline, 1)
        top.addWidget(self.timeline_label)
        top.addWidget(self.live_button)
        middle = QtWidgets.QHBoxLayout()
        middle.addWidget(QtWidgets.QLabel("probe images"))
        middle.addWidget(self.probe_list, 1)
        middle.addWidget(self.export_button)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 0)
        layout.addLayout(top)
        layout.addLayout(middle)
        layout.addWidget(self.scroll, 1)

        self.timeline.valueChanged.connect(self._slider_moved)
        self.live_button.clicked.connect(self._live_clicked)
        self.probe_list.itemChanged.connect(self._probe_ticked)
        self.png_action.triggered.connect(self._ask_png)
        self.gif_action.triggered.connect(self._ask_gif)
        self.sequence_action.triggered.connect(self._ask_sequence)
        self._placeholder("Attention maps appear here once the trainer sends its first snapshot.")

    # -- public API ---------------------------------------------------------------------------

    def add_snapshots(self, snaps: Sequence[AttentionSnapshot]) -> None:
        """Append snapshots; if the view was at the newest one (live), show the newest again."""
        if not snaps:
            return
        for snap in snaps:
            check_snapshot(snap)
        was_live = self.is_live()
        for snap in snaps:
            self._remember(snap)
        self._update_timeline_range()
        if was_live:
            newest = len(self._snapshots) - 1
            self.timeline.blockSignals(True)
            self.timeline.setValue(newest)
            self.timeline.blockSignals(False)
            self._show(newest, live=True)
        else:
            self._update_timeline_label()

    def set_snapshots(self, snaps: Sequence[AttentionSnapshot]) -> None:
        """Replace every snapshot (opening a finished run) and show the newest."""
        for snap in snaps:
            check_snapshot(snap)
        self.clear()
        self.add_snapshots(list(snaps))

    def clear(self) -> None:
        """Forget every snapshot and empty the picture."""
        self._snapshots.clear()
        self._current = -1
        self._map_hi = self._diff_bound = 0.0
        self._first_mean_diff.clear()
        self._update_timeline_range()
        self._update_timeline_label()
        self._placeholder("Attention maps appear here once the trainer sends its first snapshot.")

    def snapshot_count(self) -> int:
        return len(self._snapshots)

    def current_index(self) -> int:
        """Index of the snapshot on screen, −1 when there is none."""
        return self._current

    def is_live(self) -> bool:
        """Whether the view follows new snapshots (it shows the newest, or there is none yet)."""
        return self._current == len(self._snapshots) - 1

    def show_snapshot(self, i: int) -> None:
        """Show snapshot ``i`` (negative counts from the end); the newest one means "live"."""
        count = len(self._snapshots)
        if count == 0:
            raise ValueError("no attention snapshot to show yet")
        if not -count <= i < count:
            raise ValueError(f"snapshot index {i} is out of range: {count} snapshots (0..{count - 1})")
        self._go_to(i % count)

    def probe_indices(self) -> list[int]:
        return list(self._probe_indices)

    def set_probe_indices(self, indices: Sequence[int]) -> None:
        """Show these probe images (in this order, duplicates dropped)."""
        chosen: list[int] = []
        for index in indices:
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
                raise ValueError(f"probe index must be a non-negative integer, got {index!r}")
            if int(index) not in chosen:
                chosen.append(int(index))
        available = self._probe_count()
        if available and any(i >= available for i in chosen):
            bad = next(i for i in chosen if i >= available)
            raise ValueError(f"probe index {bad} is out of range: the snapshots hold {available} "
                             f"probe images (0..{available - 1})")
        self._probe_indices = chosen
        self._sync_probe_list()
        self._rerender()

    def image_items(self) -> dict[tuple[str, str], pg.ImageItem]:
        """The ImageItems on screen, keyed ``(pair name, role)``, role in :data:`ROLES`.

        Each shows one column of a pair: the selected probes top to bottom, as a mosaic (see
        :func:`mosaic`); :meth:`displayed_array` cuts one probe's array out of it.
        """
        self._flush()
        return {(name, role): item for name, block in self._blocks.items() for role, item in block.items.items()}

    def shown_probes(self) -> list[int]:
        """The probe images on screen, top to bottom (the selected ones the snapshot holds)."""
        self._flush()
        return list(self._shown_probes_now) if self._blocks else []

    def displayed_array(self, pair: str, probe: int, role: str) -> np.ndarray:
        """The array on screen for probe image ``probe`` of pair ``pair`` in column ``role``, at its
        native size: the probe image as uint8 RGB, or the teacher/student/difference map."""
        if role not in ROLES:
            raise ValueError(f"unknown column {role!r}; columns: {', '.join(ROLES)}")
        self._flush()
        block = self._blocks.get(pair)
        if block is None:
            raise ValueError(f"no pair named {pair!r} on screen; pairs: {', '.join(self._blocks) or 'none'}")
        if probe not in self._shown_probes_now:
            shown = ", ".join(map(str, self._shown_probes_now)) or "none"
            raise ValueError(f"probe image {probe} is not on screen; shown: {shown}")
        return block.tile(role, self._shown_probes_now.index(probe))

    def levels(self) -> dict[str, tuple[float, float]]:
        """The colour scales in use: ``{"maps": (0, hi), "difference": (−d, d)}``."""
        return {"maps": (0.0, self._map_hi or 1.0), "difference": (-(self._diff_bound or 1.0), self._diff_bound or 1.0)}

    def export_png(self, path) -> Path:
        """Save the picture (title, colour bars and every row) as a PNG; returns the path."""
        if self._current < 0:
            raise ValueError("no attention snapshot to export yet")
        path = Path(path)
        self._flush()
        image = self._grab()
        if not image.save(str(path), "PNG"):
            raise OSError(f"could not write the PNG file {path}")
        return path

    def export_png_sequence(self, folder) -> list[Path]:
        """Save every snapshot as ``attention_0001.png``, ... in ``folder``; returns the paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for number, image in enumerate(self._render_all(), start=1):
            path = folder / f"attention_{number:04d}.png"
            if not image.save(str(path), "PNG"):
                raise OSError(f"could not write the PNG file {path}")
            paths.append(path)
        return paths

    def export_gif(self, path, fps: float = 4) -> Path:
        """Save the whole evolution as an animated GIF, one frame per snapshot, looping."""
        if not 0 < fps <= MAX_GIF_FPS:
            raise ValueError(f"GIF frame rate must be above 0 and at most {MAX_GIF_FPS} frames per second, got {fps}")
        path = Path(path)
        frames = _same_size([qimage_to_pil(image) for image in self._render_all()])
        duration = max(20, int(round(1000 / fps)))      # GIF delays are in 10 ms units; 20 ms is the floor
        frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:],
                       duration=duration, loop=0, disposal=1)
        return path

    # -- snapshots and timeline -----------------------------------------------------------------

    def _remember(self, snap: AttentionSnapshot) -> None:
        self._snapshots.append(snap)
        hi, d = snapshot_bounds(snap)
        self._map_hi = max(self._map_hi, hi)
        self._diff_bound = max(self._diff_bound, d)
        for pair in snap.pairs:
            self._first_mean_diff.setdefault(pair.name, mean_abs_difference(pair.teacher, pair.student))
        if self.probe_list.count() != self._probe_count():
            self._sync_probe_list()

    def _probe_count(self) -> int:
        return int(self._snapshots[-1].images.shape[0]) if self._snapshots else 0

    def _update_timeline_range(self) -> None:
        count = len(self._snapshots)
        self.timeline.blockSignals(True)
        self.timeline.setRange(0, max(0, count - 1))
        if self._current >= 0:
            self.timeline.setValue(self._current)
        self.timeline.blockSignals(False)
        self.timeline.setEnabled(count > 1)
        self.export_button.setEnabled(count > 0)

    def _update_timeline_label(self) -> None:
        live = self.is_live()
        self.live_button.setChecked(live and self._current >= 0)
        self.live_button.setEnabled(self._current >= 0)
        if self._current < 0:
            self.timeline_label.setText("no snapshot yet")
            return
        self.timeline_label.setText(self._caption(self._snapshots[self._current], self._current))
        self.timeline_label.setToolTip("" if live else "Pinned to this snapshot: press \"live\" or drag "
                                                       "the slider to the end to follow new ones")

    def _live_clicked(self) -> None:
        if self._snapshots:
            self.show_snapshot(-1)
        else:
            self.live_button.setChecked(False)

    def _caption(self, snap: AttentionSnapshot, index: int) -> str:
        stage = "" if snap.stage == "student" else f" · {snap.stage} stage"
        return f"snapshot {index + 1}/{len(self._snapshots)} · step {snap.step} · epoch {snap.epoch}{stage}"

    def _go_to(self, index: int) -> None:
        if self.timeline.value() != index:
            self.timeline.setValue(index)        # renders through _slider_moved
        else:
            self._slider_moved(index)

    def _slider_moved(self, index: int) -> None:
        self._show(index)

    def _show(self, index: int, live: bool = False) -> None:
        if not 0 <= index < len(self._snapshots):
            return
        self._current = index
        self._request_render(live)
        self._update_timeline_label()
        self.snapshotShown.emit(index)

    def _rerender(self) -> None:
        if self._current >= 0:
            self._request_render()

    def _request_render(self, live: bool = False) -> None:
        """Draw the current snapshot on the next event-loop turn (once, however often asked).

        So the worker's hand-over returns at once, and drawing the snapshot, with the repaint it
        causes, is a turn of its own instead of adding to the other widgets' in the same turn.
        Following new snapshots (``live``), it draws at most every :data:`LIVE_RENDER_INTERVAL_S`;
        what the user asks for (slider, probes) is drawn on the next turn. What asks for the items
        (and the exports) draws at once (:meth:`_flush`).
        """
        self._render_due = True
        wait = max(0.0, self._rendered_at + LIVE_RENDER_INTERVAL_S - time.monotonic()) if live else 0.0
        if not self._render_timer.isActive() or self._render_timer.remainingTime() > 1000 * wait:
            self._render_timer.start(math.ceil(1000 * wait))

    def _render_pending(self) -> None:
        self._render_timer.stop()
        if self._render_due:
            self._render_due = False
            self._rendered_at = time.monotonic()
            if 0 <= self._current < len(self._snapshots):
                self._render(self._snapshots[self._current], self._current)

    def _flush(self) -> None:
        """Draw what is still waiting for an event-loop turn: the current snapshot, the last blocks."""
        self._render_pending()
        self._finish_build()

    # -- probe selector ---------------------------------------------------------------------------

    def _sync_probe_list(self) -> None:
        self.probe_list.blockSignals(True)
        self.probe_list.clear()
        if self._snapshots:
            labels = self._snapshots[-1].labels
            for i in range(self._probe_count()):
                text = f"{i} · class {labels[i]}" if i < len(labels) else str(i)
                item = QtWidgets.QListWidgetItem(text)
                item.setData(QtCore.Qt.ItemDataRole.UserRole, i)
                item.setFlags(item.flags() | QtCore.Qt.ItemFlag.ItemIsUserCheckable)
                checked = i in self._probe_indices
                item.setCheckState(QtCore.Qt.CheckState.Checked if checked else QtCore.Qt.CheckState.Unchecked)
                self.probe_list.addItem(item)
        self.probe_list.blockSignals(False)

    def _probe_ticked(self, _item: QtWidgets.QListWidgetItem) -> None:
        ticked = [self.probe_list.item(row).data(QtCore.Qt.ItemDataRole.UserRole)
                  for row in range(self.probe_list.count())
                  if self.probe_list.item(row).checkState() == QtCore.Qt.CheckState.Checked]
        self._probe_indices = ticked
        self._rerender()

    # -- drawing ----------------------------------------------------------------------------------

    def _placeholder(self, text: str) -> None:
        self._render_timer.stop()
        self._render_due = False
        self._remove_blocks()
        self._layout_key = None
        self._bar_levels = None
        self._shown_probes_now = []
        self._title.setText(html.escape(text))
        self._bars.setVisible(False)
        self.graphics.setMinimumSize(0, 0)

    def _remove_blocks(self) -> None:
        self._build_timer.stop()
        self._pending.clear()
        layout = self.graphics.ci
        for block in self._blocks.values():
            for item in (block.header, block.column_axis, block.row_axis, block.view):
                layout.removeItem(item)
        self._blocks.clear()
        self._headers.clear()
        self._rows_key = self._grid = None

    def _shown_probes(self, snap: AttentionSnapshot) -> list[int]:
        return [i for i in self._probe_indices if i < snap.images.shape[0]]

    def _render(self, snap: AttentionSnapshot, index: int) -> None:
        """Show ``snap``: build the blocks if the layout changed, else only hand over new arrays."""
        probes = self._shown_probes(snap)
        key = (tuple((p.name, p.teacher_layer, p.student_layer, p.teacher.shape[1:]) for p in snap.pairs),
               snap.images.shape[1:3], bool(probes))
        if key != self._layout_key:
            self._build(snap, probes)
            self._layout_key = key
        caption = self._caption(snap, index)
        if not snap.pairs:
            caption += " — this snapshot holds no distilled pair"
        elif not probes:
            caption += " — no probe image ticked"
        self._title.setText(html.escape(caption))
        self._shown_probes_now = probes
        self._drawn = snap
        if not (snap.pairs and probes):
            return
        labels = tuple(str(snap.labels[k]) if k < len(snap.labels) else "?" for k in probes)
        if (tuple(probes), labels) != self._rows_key:
            self._grid = MosaicGrid.of(snap, len(probes))
            self._row_labels = [f"probe {k}\nclass {label}" for k, label in zip(probes, labels)]
            for block in self._blocks.values():
                block.arrange(self._grid, self._row_labels)
            self._rows_key = (tuple(probes), labels)
            self._fit_height()
        self._apply_levels()
        self._show_blocks(snap, probes, self._blocks)

    def _show_blocks(self, snap: AttentionSnapshot, probes: list[int], names) -> None:
        """Hand ``snap``'s arrays to the blocks of the pairs named in ``names``."""
        grid = self._grid
        images = mosaic(display_image(snap.images[probes]), grid.rows, grid.gap_rows, 255)
        for pair in snap.pairs:
            if pair.name not in names:
                continue
            now = mean_abs_difference(pair.teacher, pair.student)
            first = self._first_mean_diff.get(pair.name, now)
            header = (f"<b>{html.escape(pair.name)}</b> &nbsp; mean |student − teacher| = <b>{now:.3f}</b>"
                      f" &nbsp;(first snapshot {first:.3f})")
            self._blocks[pair.name].show(pair, probes, images, header)

    def _apply_levels(self) -> None:
        """Give the bars and the images the current scales (only when they have changed)."""
        levels = (self._map_hi or 1.0, self._diff_bound or 1.0)
        if levels == self._bar_levels:
            return
        self._map_bar.setLevels((0.0, levels[0]))
        self._diff_bar.setLevels((-levels[1], levels[1]))
        for block in self._blocks.values():
            for role in ("teacher", "student"):
                block.items[role].setLevels(self._map_bar.levels())
            block.items["difference"].setLevels(self._diff_bar.levels())
        self._bar_levels = levels

    def _build(self, snap: AttentionSnapshot, probes: list[int]) -> None:
        """Replace the pairs' blocks (once per layout), one pair per event-loop turn
        (:meth:`_build_next`), so that a first snapshot with many pairs never holds the window up
        for long; asking for the items finishes the build at once."""
        self._remove_blocks()
        self._bar_levels = None
        showing = bool(snap.pairs and probes)
        self._bars.setVisible(showing)
        self.graphics.setMinimumSize(0, 0)
        if showing:
            self._pending = list(snap.pairs)
            self._build_timer.start()

    def _add_block(self, pair: PairMaps) -> _PairBlock:
        """Build one pair's block under the others: three grid rows, the header line, the column
        titles, then the row labels (grid column 0) beside the ViewBox of mosaics (column 1)."""
        block = _PairBlock(pair)
        for role in ("teacher", "student"):
            block.items[role].setLookupTable(self._map_bar.lut)
            block.items[role].setLevels(self._map_bar.levels())
        block.items["difference"].setLookupTable(self._diff_bar.lut)
        block.items["difference"].setLevels(self._diff_bar.levels())
        row = 2 + 3 * len(self._blocks)
        self._blocks[pair.name] = block
        self._headers[pair.name] = block.header
        layout = self.graphics.ci
        layout.addItem(block.header, row=row, col=0, colspan=2)
        layout.addItem(block.column_axis, row=row + 1, col=1)
        layout.addItem(block.row_axis, row=row + 2, col=0)
        layout.addItem(block.view, row=row + 2, col=1)
        if self._grid is not None:
            block.arrange(self._grid, self._row_labels)
        return block

    def _build_next(self) -> None:
        """Build the next pending block and show the current snapshot in it."""
        if not self._pending:
            return
        block = self._add_block(self._pending.pop(0))
        if self._grid is not None and self._drawn is not None:
            self._fit_height()
            self._show_blocks(self._drawn, self._shown_probes_now, (block.name,))
        if self._pending:
            self._build_timer.start()

    def _finish_build(self) -> None:
        while self._pending:
            self._build_next()

    def _fit_height(self) -> None:
        """Size each pair's ViewBox to its mosaics at the scroll area's width, and the picture to them.

        Each panel is as wide as a quarter of the width left by the row labels (less a scroll bar,
        so the result does not depend on whether the bar shows), within [MIN_CELL_PX, MAX_CELL_PX];
        the heights follow from the probe image's aspect, and the area scrolls when they do not fit.
        """
        grid = self._grid
        if grid is None or not self._blocks:
            return
        left, top, right, bottom = self.graphics.ci.layout.getContentsMargins()
        frame = 2 * self.graphics.frameWidth() + left + right + SPACING_PX
        available = self.scroll.width() - self.scroll.verticalScrollBar().sizeHint().width() - ROW_LABEL_PX - frame
        grid_width, grid_height = grid.size()
        cell = min(MAX_CELL_PX, max(MIN_CELL_PX, available * grid.width / grid_width))
        scale = cell / grid.width                      # screen pixels per probe-image pixel
        view_width, view_height = math.floor(grid_width * scale), math.ceil(grid_height * scale)
        for block in self._blocks.values():
            block.view.setFixedWidth(view_width)
            block.view.setFixedHeight(view_height)
        image_spacer, gap_spacer = self._bar_spacers      # the bars sit over the columns they describe
        image_spacer.setFixedWidth((grid.width + grid.gap) * scale)
        self._map_bar.setFixedWidth((2 * grid.width + grid.gap) * scale)
        gap_spacer.setFixedWidth(grid.gap * scale)
        self._diff_bar.setFixedWidth(grid.width * scale)
        pairs = len(self._blocks)
        rows = 2 + 3 * pairs
        height = (TITLE_PX + BAR_ROW_PX + pairs * (HEADER_PX + COLUMN_TITLE_PX + view_height)
                  + (rows - 1) * SPACING_PX + top + bottom + 2 * self.graphics.frameWidth())
        self.graphics.setMinimumSize(int(ROW_LABEL_PX + view_width + frame), int(math.ceil(height)))

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit_height()

    # -- export -----------------------------------------------------------------------------------

    def _grab(self) -> QtGui.QImage:
        self._finish_build()
        QtWidgets.QApplication.processEvents(QtCore.QEventLoop.ProcessEventsFlag.ExcludeUserInputEvents)
        return self.graphics.grab().toImage()

    def _render_all(self) -> list[QtGui.QImage]:
        """Render every snapshot through the view and grab it, then restore the snapshot on screen."""
        snapshots = list(self._snapshots)
        if not snapshots:
            raise ValueError("no attention snapshot to export yet")
        current = self._current
        self._render_timer.stop()               # every frame is drawn here, in order
        self._render_due = False
        images = []
        try:
            for index, snap in enumerate(snapshots):
                self._render(snap, index)
                images.append(self._grab())
        finally:
            if 0 <= current < len(self._snapshots):
                self._render(self._snapshots[current], current)
        return images

    def _ask_png(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save attention maps as PNG", "attention.png",
                                                        "PNG image (*.png)")
        if path:
            self._run_export(lambda: self.export_png(path))

    def _ask_gif(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save attention evolution as GIF",
                                                        "attention.gif", "GIF animation (*.gif)")
        if path:
            self._run_export(lambda: self.export_gif(path))

    def _ask_sequence(self) -> None:
        folder = QtWidgets.QFileDialog.getExistingDirectory(self, "Folder for the PNG sequence")
        if folder:
            self._run_export(lambda: self.export_png_sequence(folder))

    def _run_export(self, export) -> None:
        QtWidgets.QApplication.setOverrideCursor(QtCore.Qt.CursorShape.WaitCursor)
        try:
            export()
        except (OSError, ValueError) as error:
            QtWidgets.QMessageBox.warning(self, "Export failed", str(error))
        finally:
            QtWidgets.QApplication.restoreOverrideCursor()
