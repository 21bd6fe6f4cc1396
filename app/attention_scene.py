"""Drawing one attention snapshot: the picture of the attention view, built from pyqtgraph items.

:class:`AttentionScene` owns a ``pg.GraphicsLayoutWidget`` holding a title line, two colour bars
(teacher/student maps on one sequential scale, the difference on a diverging one) and one
:class:`PairBlock` per distilled pair::

    probe image | teacher map | student map | difference (student − teacher)

Drawing stays cheap however many probes and pairs are shown: each pair is ONE ViewBox holding four
images, one per column, each a vertical mosaic of the selected probes composed in numpy
(:mod:`app.attention_maps`). Row labels and column titles are the ticks of two axes linked to that
ViewBox, so they stay aligned at any size. The items are built once per layout (pairs and image
size), one pair per event-loop turn, so a first snapshot with many pairs never holds the window up;
a new snapshot only hands new arrays to the same items.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from app import colormaps
from app.attention_maps import (
    ROLES, MosaicGrid, display_image, display_map, mean_abs_difference, mosaic, mosaic_tile, nice_ticks,
)
from app.pacing import PacedTimer
from featdistill_core import AttentionSnapshot, PairMaps

MIN_CELL_PX = 72           # an image panel never gets narrower than this (the view scrolls instead)
ROWS_IN_VIEW = 2           # panels are sized so this many probe rows of the first pair fit in the height
MAX_CELL_PX = 240          # nor wider: beyond this a 32×32 probe image only gets blurrier
ROW_LABEL_PX = 64          # width of the "probe k / class c" column
TITLE_PX = 30
HEADER_PX = 24
COLUMN_TITLE_PX = 20
BAR_ROW_PX = 64
SPACING_PX = 4
BUILD_INTERVAL_MS = 20     # a snapshot's pairs are built one at a time this far apart (the window answers in between)


# Static parts (labels, bars) are painted once into a pixmap and blitted on later repaints.
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
        self._height = height
        self.setFixedHeight(height)
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed)

    def setText(self, text: str) -> None:
        if text != self.text:
            self.text = text
            self._item.setHtml(text)
            self._place()

    def set_wrapped(self, lines: int) -> None:
        """Wrap the text at the line's width over ``lines`` lines (1: one line, no wrapping)."""
        self._wrapped = lines > 1
        self.setFixedHeight(self._height * lines)
        self._item.setTextWidth(max(100.0, self.width() - 20) if self._wrapped else -1)
        self._place()

    def resizeEvent(self, event) -> None:
        if getattr(self, "_wrapped", False):
            self._item.setTextWidth(max(100.0, self.width() - 20))
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


class ColorBar(pg.GraphicsWidget):
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

    def caption_width(self) -> float:
        """The width the caption needs (the bar is never narrower)."""
        return QtGui.QFontMetricsF(self._font).horizontalAdvance(self.caption) + 8

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


class PairBlock:
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
            item = colormaps.MapImage(axisOrder="row-major")
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
        # (not cached: its pixmap, as big as the pair's whole panel, cost more to fill and blend than the
        # few rectangles cost to draw; a panel's first paint 15 → 12 ms on the build machine, idle)
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
        """Hand this snapshot's mosaics to the four images (same items, new arrays). An image whose
        mosaic has not changed is left alone: the probe images never change in a run, nor do the
        teacher's maps once it is trained, and the images are what a repaint costs (a snapshot's
        repaint then covers the student's and the difference's columns only)."""
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
            if not reshaped and np.array_equal(item.image, arrays[role]):
                continue
            item.setImage(arrays[role], autoLevels=False)
            if reshaped:
                item.setRect(QtCore.QRectF(grid.column_x(column), 0.0, grid.width, height))
        self.header.setText(header)

    def tile(self, role: str, row: int) -> np.ndarray:
        """What row ``row`` of column ``role`` shows, at the array's native size."""
        grid = self.grid
        native = grid.height if role == "image" else self.map_height
        return mosaic_tile(self.items[role].image, row, grid.rows, grid.gap_rows, native)


class AttentionScene:
    """The picture of one snapshot (title, colour bars, one block per pair) in :attr:`graphics`.

    ``available_width()`` and ``available_height()`` give the room the picture may fill (the view's
    scroll area less the scroll bars): the panels are sized from them (:meth:`fit`), and the picture
    scrolls when they do not fit.
    """

    def __init__(self, available_width: Callable[[], float], available_height: Callable[[], float] | None = None):
        self._available_width = available_width
        self._available_height = available_height
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setObjectName("attentionGraphics")
        self.graphics.setBackground(colormaps.BACKGROUND)
        # One rectangle around what changed, not the changed parts alone: clipped to several
        # rectangles, each scaled map takes Qt's slow drawing path (a snapshot's repaint 3.9 → 3.0 ms).
        self.graphics.setViewportUpdateMode(QtWidgets.QGraphicsView.ViewportUpdateMode.BoundingRectViewportUpdate)
        # A few dozen items: found by a plain search, with no index to keep (its rebuilds, when the
        # picture grew, asked every pyqtgraph item's bounding rectangle, in Python).
        self.graphics.scene().setItemIndexMethod(QtWidgets.QGraphicsScene.ItemIndexMethod.NoIndex)
        # No cached background: pyqtgraph caches it as a pixmap as big as the view, here the whole
        # scrolled picture (3–4 thousand pixels tall), made anew whenever the picture grows: a
        # snapshot's first paint spent ~15 of its ~18 ms filling it. A plain fill of what is exposed is less.
        self.graphics.setCacheMode(QtWidgets.QGraphicsView.CacheModeFlag.CacheNone)
        self.graphics.ci.setSpacing(SPACING_PX)
        # built once and kept: the title line and the two colour bars (the pairs' blocks come and go)
        self.title = _TextLine(TITLE_PX, size_pt=11, bold=True, justify="center")
        self.map_bar = ColorBar(colormaps.sequential_colormap(), "attention, teacher and student (mean 1 per map)")
        self.diff_bar = ColorBar(colormaps.diverging_colormap(), "student − teacher")
        self._bar_spacers = (pg.GraphicsWidget(), pg.GraphicsWidget())   # under the image column, between bars
        for spacer in self._bar_spacers:
            spacer.setFixedHeight(BAR_ROW_PX)         # (the filler row, not the bars, takes spare height)
        self.graphics.ci.addItem(self.title, row=0, col=0, colspan=2)
        self._bars = self.graphics.ci.addLayout(row=1, col=1)
        self._bars.setSpacing(0)
        self._bars.setContentsMargins(0, 0, 0, 0)
        for col, item in enumerate((self._bar_spacers[0], self.map_bar, self._bar_spacers[1], self.diff_bar)):
            self._bars.addItem(item, row=0, col=col)
        # Below every block, a row that takes the picture's spare height: the picture is as tall as all
        # its pairs from the first one on, and the blocks still being built do not spread the others out.
        self._filler = pg.GraphicsWidget()
        self._filler_row: int | None = None
        self._place_filler(2)

        self.blocks: dict[str, PairBlock] = {}
        self.drawn: AttentionSnapshot | None = None   # the snapshot the blocks show
        self.probes: list[int] = []                    # the probes they show, top to bottom
        self._layout_key: tuple | None = None     # pairs and image size the items were built for
        self._rows_key: tuple | None = None       # probes (and their labels) the blocks are arranged for
        self._grid: MosaicGrid | None = None
        self._row_labels: list[str] = []
        self._bar_levels: tuple | None = None
        self._first_differences: dict[str, float] = {}
        self._pending: list[PairMaps] = []        # pairs whose blocks are still to be built
        self._unshown: list[str] = []             # blocks added, to be filled on the next turn
        self._view_size: tuple[int, int] | None = None   # each pair's ViewBox, in pixels (set by fit)
        self._made: PairBlock | None = None       # a pending pair's block, made, to be added next turn
        self.build_timer = PacedTimer(self.graphics, name="maps: build")    # builds them one at a time, BUILD_INTERVAL_MS apart
        self.build_timer.setInterval(BUILD_INTERVAL_MS)
        self.build_timer.timeout.connect(self._build_next)

    # ---- what is shown -------------------------------------------------------------------------
    def title_text(self) -> str:
        return self.title.text

    def set_caption(self, caption: str) -> None:
        """Change the title line only (a new snapshot arrived while an older one is shown)."""
        if self.drawn is not None:
            self.title.setText(html.escape(caption))

    def header_text(self, pair: str) -> str:
        return self.blocks[pair].header.text

    def placeholder(self, text: str) -> None:
        """No snapshot: only ``text`` in the title line (when that is all it shows already, only the
        text changes: the window updates a waiting text's ETA as the run goes)."""
        if self.drawn is None and not self.blocks and not self._building() \
                and self._layout_key is None \
                and self.title.text:
            self.title.setText(html.escape(text))
            return
        self._remove_blocks()
        self._layout_key = None
        self._bar_levels = None
        self.probes = []
        self.drawn = None
        self.title.set_wrapped(3)                 # a sentence or two, wrapped to the width
        self.title.setText(html.escape(text))
        self._bars.setVisible(False)
        self.graphics.setMinimumSize(0, 0)

    def render(self, snap: AttentionSnapshot, probes: Sequence[int], caption: str,
               levels: tuple[tuple[float, float], tuple[float, float]],
               first_differences: dict[str, float]) -> None:
        """Show ``snap`` on ``probes`` with the map and difference ``levels``: build the blocks if the
        layout changed, else only hand over new arrays. ``first_differences`` gives each pair's mean
        |student − teacher| in its first snapshot, for the header."""
        probes = list(probes)
        key = (tuple((p.name, p.teacher_layer, p.student_layer, p.teacher.shape[1:]) for p in snap.pairs),
               snap.images.shape[1:3], bool(probes))
        if key != self._layout_key:
            self.title.set_wrapped(1)
            self._build(snap, probes)
            self._layout_key = key
        if not snap.pairs:
            caption += " — this snapshot holds no distilled pair"
        elif not probes:
            caption += " — no probe image ticked"
        self.title.setText(html.escape(caption))
        self.probes = probes
        self.drawn = snap
        self._first_differences = dict(first_differences)
        if not (snap.pairs and probes):
            return
        labels = tuple(str(snap.labels[k]) if k < len(snap.labels) else "?" for k in probes)
        if (tuple(probes), labels) != self._rows_key:
            self._grid = MosaicGrid.of(snap, len(probes))
            self._row_labels = [f"probe {k}\nclass {label}" for k, label in zip(probes, labels)]
            for block in self.blocks.values():
                block.arrange(self._grid, self._row_labels)
            self._rows_key = (tuple(probes), labels)
            self.fit()
        self._apply_levels(levels)
        self._show_blocks(snap, probes, self.blocks)

    def finish(self) -> None:
        """Build the blocks still waiting for an event-loop turn, now, and lay them out."""
        if not self._building():
            return
        while self._building():
            self._build_next()
        self.graphics.ci.layout.activate()       # (else on the next turn: what asks sees them placed)

    def image_items(self) -> dict[tuple[str, str], pg.ImageItem]:
        """The ImageItems on screen, keyed ``(pair name, role)``, role in :data:`ROLES`."""
        self.finish()
        return {(name, role): item for name, block in self.blocks.items() for role, item in block.items.items()}

    def tile(self, pair: str, probe: int, role: str) -> np.ndarray:
        """The array on screen for ``probe`` of ``pair`` in column ``role``, at its native size."""
        if role not in ROLES:
            raise ValueError(f"unknown column {role!r}; columns: {', '.join(ROLES)}")
        self.finish()
        block = self.blocks.get(pair)
        if block is None:
            raise ValueError(f"no pair named {pair!r} on screen; pairs: {', '.join(self.blocks) or 'none'}")
        if probe not in self.probes:
            shown = ", ".join(map(str, self.probes)) or "none"
            raise ValueError(f"probe image {probe} is not on screen; shown: {shown}")
        return block.tile(role, self.probes.index(probe))

    def rows_within(self, height: float) -> int:
        """How many probe rows of the first pair end within ``height`` pixels of the picture's top."""
        block = next(iter(self.blocks.values()), None)
        if block is None or self._grid is None:
            return 0
        view = block.view
        top = view.mapRectToScene(view.boundingRect()).top()
        scale = view.height() / max(self._grid.size()[1], 1e-9)
        rows = 0
        for k in range(self._grid.probes):
            bottom = top + (self._grid.row_y(k) + self._grid.height) * scale
            if bottom <= height + 0.5:
                rows += 1
        return rows

    def grab(self) -> QtGui.QImage:
        """The picture as an image, every block built and painted."""
        self.finish()
        QtWidgets.QApplication.processEvents(QtCore.QEventLoop.ProcessEventsFlag.ExcludeUserInputEvents)
        return self.graphics.grab().toImage()

    # ---- building ---------------------------------------------------------------------------------
    def _remove_blocks(self) -> None:
        self.build_timer.stop()
        self._pending.clear()
        self._unshown.clear()
        self._made = None
        layout = self.graphics.ci
        for block in self.blocks.values():
            for item in (block.header, block.column_axis, block.row_axis, block.view):
                layout.removeItem(item)
        self.blocks.clear()
        self._rows_key = self._grid = None
        self._view_size = None

    def _place_filler(self, row: int) -> None:
        """Put the filler row (see ``__init__``) at grid row ``row``, under the blocks to come."""
        if row == self._filler_row:
            return
        layout = self.graphics.ci
        if self._filler_row is not None:
            layout.removeItem(self._filler)
            layout.layout.setRowStretchFactor(self._filler_row, 0)
        layout.addItem(self._filler, row=row, col=0, colspan=2)
        layout.layout.setRowStretchFactor(row, 1)
        self._filler_row = row

    def _build(self, snap: AttentionSnapshot, probes: list[int]) -> None:
        """Replace the pairs' blocks (once per layout), one pair per event-loop turn
        (:meth:`_build_next`); asking for the items finishes the build at once."""
        self._remove_blocks()
        self._bar_levels = None
        showing = bool(snap.pairs and probes)
        self._bars.setVisible(showing)
        self.graphics.setMinimumSize(0, 0)
        if showing:
            self._pending = list(snap.pairs)
            self._place_filler(2 + 3 * len(snap.pairs))
            self.build_timer.start()

    def _make_block(self, pair: PairMaps) -> PairBlock:
        """One pair's block, its items made and coloured, not yet in the scene."""
        block = PairBlock(pair)
        for role in ("teacher", "student"):
            block.items[role].setLookupTable(self.map_bar.lut)
            block.items[role].setLevels(self.map_bar.levels())
        block.items["difference"].setLookupTable(self.diff_bar.lut)
        block.items["difference"].setLevels(self.diff_bar.levels())
        return block

    def _place_block(self, block: PairBlock) -> PairBlock:
        """Put a made block under the others: three grid rows, the header line, the column titles,
        then the row labels (grid column 0) beside the ViewBox of mosaics (column 1)."""
        row = 2 + 3 * len(self.blocks)
        self.blocks[block.name] = block
        layout = self.graphics.ci
        layout.addItem(block.header, row=row, col=0, colspan=2)
        layout.addItem(block.column_axis, row=row + 1, col=1)
        layout.addItem(block.row_axis, row=row + 2, col=0)
        layout.addItem(block.view, row=row + 2, col=1)
        if self._grid is not None:
            block.arrange(self._grid, self._row_labels)
        if self._view_size is not None:
            self._size_block(block)
        return block

    def _size_block(self, block: PairBlock) -> None:
        width, height = self._view_size
        block.view.setFixedWidth(width)
        block.view.setFixedHeight(height)
        block.column_axis.setFixedWidth(width)    # the titles stay over their columns
        block.row_axis.setFixedHeight(height)     # (and the labels' row is the view's: spare height goes below)

    def _build_next(self) -> None:
        """One step of the build, three per pair: make the next pending pair's block; on the next turn
        add it to the scene, at its size; on the one after, show the current snapshot in it (each step
        alone costs up to ~15 ms with its repaint on the build machine while a run trains; together
        they held the window up for 25–40 ms). The picture has its whole height from the first pair
        on (:meth:`fit`), so adding a block lays out only the rows it fills: the picture keeps its
        size, and what is drawn already is not drawn anew (a new size repainted it all, 15–20 ms)."""
        if self._made is not None:
            block, self._made = self._made, None
            self._place_block(block)
            self._unshown.append(block.name)
        elif self._unshown:
            names = tuple(self._unshown)
            self._unshown.clear()
            if self._grid is not None and self.drawn is not None:
                self._show_blocks(self.drawn, self.probes, names)
        elif self._pending:
            self._made = self._make_block(self._pending.pop(0))
        if self._building():
            self.build_timer.start()

    def _building(self) -> bool:
        return bool(self._pending or self._unshown) or self._made is not None

    # ---- drawing ----------------------------------------------------------------------------------
    def _show_blocks(self, snap: AttentionSnapshot, probes: list[int], names) -> None:
        """Hand ``snap``'s arrays to the blocks of the pairs named in ``names``."""
        grid = self._grid
        images = mosaic(display_image(snap.images[probes]), grid.rows, grid.gap_rows, 255)
        for pair in snap.pairs:
            if pair.name not in names:
                continue
            now = mean_abs_difference(pair.teacher, pair.student)
            first = self._first_differences.get(pair.name, now)
            header = (f"<b>{html.escape(pair.name)}</b> &nbsp; mean |student − teacher| = <b>{now:.3f}</b>"
                      f" &nbsp;(first snapshot {first:.3f})")
            self.blocks[pair.name].show(pair, probes, images, header)

    def _apply_levels(self, levels) -> None:
        """Give the bars and the images the scales (only when they have changed)."""
        levels = (tuple(levels[0]), tuple(levels[1]))
        if levels == self._bar_levels:
            return
        self.map_bar.setLevels(levels[0])
        self.diff_bar.setLevels(levels[1])
        for block in self.blocks.values():
            for role in ("teacher", "student"):
                block.items[role].setLevels(self.map_bar.levels())
            block.items["difference"].setLevels(self.diff_bar.levels())
        self._bar_levels = levels

    def fit(self) -> None:
        """Size each pair's ViewBox to its mosaics at the available width, and the picture to them.

        Each panel is as wide as a quarter of the width left by the row labels, within
        [MIN_CELL_PX, MAX_CELL_PX]; the heights follow from the probe image's aspect.
        """
        grid = self._grid
        pairs = len(self.blocks) + len(self._pending) + (self._made is not None)
        if grid is None or not pairs:
            return
        left, top, right, bottom = self.graphics.ci.layout.getContentsMargins()
        frame = 2 * self.graphics.frameWidth() + left + right + SPACING_PX
        available = self._available_width() - ROW_LABEL_PX - frame
        grid_width, grid_height = grid.size()
        cell = min(MAX_CELL_PX, available * grid.width / grid_width)
        if self._available_height is not None:
            # so many probe rows of the first pair fit without scrolling: title, bars, header, titles, rows
            rows = min(ROWS_IN_VIEW, grid.probes)
            fixed = (TITLE_PX + BAR_ROW_PX + HEADER_PX + COLUMN_TITLE_PX + 4 * SPACING_PX + top
                     + 2 * self.graphics.frameWidth())
            rows_height = rows * grid.height + (rows - 1) * grid.gap          # in probe-image pixels
            cell = min(cell, (self._available_height() - fixed) / rows_height * grid.width)
        cell = max(MIN_CELL_PX, cell)
        scale = cell / grid.width                      # screen pixels per probe-image pixel
        view_width, view_height = math.floor(grid_width * scale), math.ceil(grid_height * scale)
        self._view_size = (view_width, view_height)
        for block in self.blocks.values():
            self._size_block(block)
        image_spacer, gap_spacer = self._bar_spacers      # the bars sit over the columns they describe ...
        map_width = max((2 * grid.width + grid.gap) * scale, self.map_bar.caption_width())
        diff_width = max(grid.width * scale, self.diff_bar.caption_width())
        spare = max(0.0, view_width - map_width - diff_width - grid.gap * scale)
        image_spacer.setFixedWidth(min((grid.width + grid.gap) * scale, spare))   # ... as far as their captions allow
        self.map_bar.setFixedWidth(map_width)
        gap_spacer.setFixedWidth(grid.gap * scale)
        self.diff_bar.setFixedWidth(diff_width)
        rows = 2 + 3 * pairs + 1                       # the title, the bars, three per pair, the filler
        height = (TITLE_PX + BAR_ROW_PX + pairs * (HEADER_PX + COLUMN_TITLE_PX + view_height)
                  + (rows - 1) * SPACING_PX + top + bottom + 2 * self.graphics.frameWidth())
        self.graphics.setMinimumSize(int(ROW_LABEL_PX + view_width + frame), int(math.ceil(height)))
