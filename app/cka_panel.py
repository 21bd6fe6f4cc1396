"""The layer-similarity map of the *Layers & pairs* tab: linear CKA, teacher layers × student layers.

The core computes it (:func:`featdistill_core.cka_map_for`: the run validated, the networks built —
or, for a run folder shown, the ones it trained — and CKA accumulated over probe test images in
mini-batches) on a background thread (:class:`~app.background.BackgroundTask`), with progress and a
Cancel button; the window never waits for it. Rows are the teacher's layers and columns the
student's, both in depth order; hovering a cell shows both layers with their shapes and the value;
clicking it selects the two layers in the layer trees, so *Add pair* adds them. *Suggest pairs* "by
CKA" asks the core for the depth-ordered pairs of greatest summed similarity
(:func:`featdistill_core.suggest_pairs_by_cka`).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from featdistill_core import CKAResult, RunCKA, cka_map_for

from app import colormaps
from app.background import BackgroundTask
from app.layer_picker import format_shape

DEFAULT_PROBE = 256
MAX_LABELS = 40            # axis labels for at most this many layers per side (every other one above)
CELL_TEXT_MAX = 12         # values written in the cells when both sides have at most this many layers
SELECTED_PEN = pg.mkPen("#ff2d55", width=3)
SUGGESTED_PEN = pg.mkPen("#ffffff", width=2, style=QtCore.Qt.PenStyle.DashLine)


def short_name(path: str, limit: int = 18) -> str:
    """A layer path short enough for an axis label (its end kept: ``…layer3.1.conv2``)."""
    return path if len(path) <= limit else "…" + path[-(limit - 1):]


class CKAMap(pg.PlotWidget):
    """The heat map itself (objectName ``ckaMap``): ``cellClicked(i, j)`` and ``cellHovered(i, j)``
    (−1, −1 off the map) with i a teacher layer and j a student layer."""

    cellClicked = QtCore.Signal(int, int)
    cellHovered = QtCore.Signal(int, int)

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent, background=colormaps.BACKGROUND, axisItems=None)
        self.setObjectName("ckaMap")
        self.result: CKAResult | None = None
        self.selected: tuple[int, int] | None = None
        plot = self.getPlotItem()
        plot.setMenuEnabled(False)
        plot.hideButtons()
        plot.setMouseEnabled(False, False)
        plot.invertY(True)
        for name in ("left", "bottom"):
            axis = plot.getAxis(name)
            axis.setPen(colormaps.FOREGROUND)
            axis.setTextPen(colormaps.FOREGROUND)
        for name in ("left", "bottom"):                 # every layer named, even on a short map
            plot.getAxis(name).setStyle(hideOverlappingLabels=False)
        self.image = colormaps.MapImage(axisOrder="row-major")
        self.image.setLookupTable(colormaps.lookup_table(colormaps.sequential_colormap()))
        plot.addItem(self.image)
        self.frame = QtWidgets.QGraphicsRectItem(0, 0, 1, 1)
        self.frame.setPen(SELECTED_PEN)
        self.frame.setBrush(QtGui.QBrush(QtCore.Qt.BrushStyle.NoBrush))
        self.frame.setZValue(10)
        self.frame.hide()
        plot.addItem(self.frame)
        self._texts: list[pg.TextItem] = []
        self._marks: list[QtWidgets.QGraphicsRectItem] = []
        self.marked: list[tuple[int, int]] = []
        self.scene().sigMouseMoved.connect(self._moved)
        self.scene().sigMouseClicked.connect(self._clicked)
        self.setToolTip("Linear CKA between each teacher layer (rows) and each student layer (columns): 1 = the "
                        "same representation up to rotation and scale. Click a cell to select both layers.")
        self.setMinimumHeight(90)

    # ---- content ----------------------------------------------------------------------------
    def set_result(self, result: CKAResult | None) -> None:
        self.result = result
        self.selected = None
        self.frame.hide()
        plot = self.getPlotItem()
        for text in self._texts:
            plot.removeItem(text)
        self._texts = []
        self.mark_cells([])
        if result is None:
            self.image.clear()
            for name in ("left", "bottom"):
                plot.getAxis(name).setTicks(None)
            return
        matrix = np.asarray(result.matrix, dtype=np.float32)
        shown = np.ascontiguousarray(np.nan_to_num(np.clip(matrix, 0.0, 1.0), nan=0.0), dtype=np.float32)
        self.image.setImage(shown, levels=(0.0, 1.0), autoLevels=False)
        self.image.setRect(QtCore.QRectF(0, 0, shown.shape[1], shown.shape[0]))
        rows, cols = shown.shape
        left_ticks = self._ticks(result.teacher_layers)
        plot.getAxis("left").setTicks([left_ticks])
        metrics = QtGui.QFontMetrics(plot.getAxis("left").style.get("tickFont") or self.font())
        plot.getAxis("left").setWidth(max(metrics.horizontalAdvance(text) for _, text in left_ticks) + 14)
        plot.getAxis("bottom").setTicks([self._ticks(result.student_layers)])
        if rows <= CELL_TEXT_MAX and cols <= CELL_TEXT_MAX:
            for i in range(rows):
                for j in range(cols):
                    value = float(matrix[i, j])
                    label = "–" if math.isnan(value) else f"{value:.2f}"
                    colour = "#000000" if (not math.isnan(value) and value > 0.6) else "#ffffff"
                    text = pg.TextItem(label, color=colour, anchor=(0.5, 0.5))
                    text.setPos(j + 0.5, i + 0.5)
                    plot.addItem(text)
                    self._texts.append(text)
        plot.setRange(xRange=(0, cols), yRange=(0, rows), padding=0.0)

    @staticmethod
    def _ticks(layers) -> list[tuple[float, str]]:
        step = 1 if len(layers) <= MAX_LABELS else 2
        return [(k + 0.5, short_name(layer.label)) for k, layer in enumerate(layers) if k % step == 0]

    def mark_cells(self, cells: list[tuple[int, int]]) -> None:
        """Outline ``cells`` (dashed): the pairs *Suggest pairs by CKA* chose."""
        plot = self.getPlotItem()
        for mark in self._marks:
            plot.removeItem(mark)
        self._marks = []
        self.marked = list(cells)
        for i, j in cells:
            mark = QtWidgets.QGraphicsRectItem(j + 0.06, i + 0.06, 0.88, 0.88)
            mark.setPen(SUGGESTED_PEN)
            mark.setBrush(QtGui.QBrush(QtCore.Qt.BrushStyle.NoBrush))
            mark.setZValue(9)
            plot.addItem(mark)
            self._marks.append(mark)

    def select_cell(self, i: int, j: int) -> None:
        self.selected = (i, j)
        self.frame.setRect(QtCore.QRectF(j, i, 1, 1))
        self.frame.show()

    # ---- where the mouse is -------------------------------------------------------------------
    def cell_at(self, scene_pos: QtCore.QPointF) -> tuple[int, int] | None:
        """The (teacher, student) cell under a scene position, or None."""
        if self.result is None:
            return None
        point = self.getPlotItem().vb.mapSceneToView(scene_pos)
        i, j = math.floor(point.y()), math.floor(point.x())
        rows, cols = self.result.matrix.shape
        return (i, j) if 0 <= i < rows and 0 <= j < cols else None

    def cell_position(self, i: int, j: int) -> QtCore.QPoint:
        """Where the centre of cell (i, j) is in the widget's viewport (for tests and automation)."""
        scene = self.getPlotItem().vb.mapViewToScene(QtCore.QPointF(j + 0.5, i + 0.5))
        return self.mapFromScene(scene)

    def hover_text(self, i: int, j: int) -> str:
        """Both layers with their shapes and the value, e.g. ``teacher layer3 (64×8×8) · student layer3
        (32×8×8) · CKA 0.812``."""
        result = self.result
        t, s = result.teacher_layers[i], result.student_layers[j]
        value = float(result.matrix[i, j])
        shown = "undefined (a layer that does not vary over the probe images)" if math.isnan(value) else f"{value:.3f}"
        return (f"teacher {t.label} ({format_shape(t.shape)}) · student {s.label} ({format_shape(s.shape)}) · "
                f"CKA {shown}")

    def _moved(self, scene_pos) -> None:
        cell = self.cell_at(scene_pos)
        self.cellHovered.emit(*(cell if cell is not None else (-1, -1)))
        self.setToolTip(self.hover_text(*cell) if cell is not None else "")

    def _clicked(self, event) -> None:
        if event.button() != QtCore.Qt.MouseButton.LeftButton:
            return
        cell = self.cell_at(event.scenePos())
        if cell is not None:
            self.select_cell(*cell)
            self.cellClicked.emit(*cell)


class CKAPanel(QtWidgets.QWidget):
    """The Compute controls, the map and the hover read-out. ``pairChosen(teacher, student)`` fires when
    a cell is clicked; ``config_source()`` gives ``(RunConfig, run folder or None)`` (set by the owner;
    it may raise ``ConfigError``)."""

    pairChosen = QtCore.Signal(str, str)
    computed = QtCore.Signal()

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.config_source: Callable | None = None
        self.mapped: RunCKA | None = None
        self._models: tuple = ()
        self.task = BackgroundTask("cka", self)
        self.task.progressed.connect(self._progressed)
        self.task.succeeded.connect(self._succeeded)
        self.task.failed.connect(self._failed)
        self.task.cancelled.connect(lambda: self._say("Cancelled. Press Compute to start again.", colormaps.MUTED))
        self.task.ended.connect(self._ended)

        self.probe_spin = QtWidgets.QSpinBox()
        self.probe_spin.setObjectName("ckaProbeSpin")
        self.probe_spin.setRange(8, 4096)
        self.probe_spin.setValue(DEFAULT_PROBE)
        self.probe_spin.setSuffix(" images")
        self.probe_spin.setToolTip("Test images the similarity is measured on (capped at the test split). More "
                                   "images: a steadier estimate, a longer wait.")
        self.compute_button = QtWidgets.QPushButton("Compute")
        self.compute_button.setObjectName("ckaComputeButton")
        self.compute_button.setToolTip("Measure the CKA of every teacher layer with every student layer on the "
                                       "probe images (in the background; press again to cancel).")
        self.compute_button.clicked.connect(self.toggle)
        self.status = QtWidgets.QLabel("Compute: how similar each teacher layer is to each student layer.")
        self.status.setObjectName("ckaStatus")
        self.status.setWordWrap(True)
        self.status.setFixedHeight(2 * self.status.fontMetrics().lineSpacing() + 2)
        self.map = CKAMap()
        self.map.cellClicked.connect(self._cell_clicked)
        self.map.cellHovered.connect(self._cell_hovered)
        self.hover = QtWidgets.QLabel()
        self.hover.setObjectName("ckaHover")
        self.hover.setWordWrap(True)
        self.hover.setFixedHeight(self.hover.fontMetrics().lineSpacing() + 2)   # one line; the tooltip has all
        self.hover.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)

        top = QtWidgets.QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(QtWidgets.QLabel("Probe"))
        top.addWidget(self.probe_spin)
        top.addWidget(self.compute_button)
        top.addStretch(1)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(3)
        layout.addLayout(top)
        layout.addWidget(self.status)
        layout.addWidget(self.map, 1)
        layout.addWidget(self.hover)

    @property
    def result(self) -> CKAResult | None:
        return self.mapped.result if self.mapped is not None else None

    # ---- computing ----------------------------------------------------------------------------
    def toggle(self) -> None:
        if self.task.running:
            self.task.cancel()
            self._say("Cancelling after the current batch…", colormaps.MUTED)
        else:
            self.compute()

    def compute(self) -> bool:
        """Start computing the map of the run the form describes; False (and why) when it cannot start."""
        if self.task.running:
            return False
        if self.config_source is None:
            self._say("No run to measure.", "#b00020")
            return False
        try:
            config, run_dir = self.config_source()
        except Exception as exc:        # noqa: BLE001 - a form that cannot be read: say so, in words
            from app.background import one_line
            self._say(f"Cannot compute: {one_line(exc)}", "#b00020")
            return False
        probe = self.probe_spin.value()
        self.task.start(lambda progress, cancel: cka_map_for(config, run_dir=run_dir, probe=probe,
                                                             progress=progress, cancel=cancel))
        self.compute_button.setText("Cancel")
        where = f" as trained in {run_dir.name}" if run_dir is not None else ""
        self._say(f"Checking the run and building the models{where}; then {probe} probe images through both "
                  "networks…", "#0b5394")
        return True

    def _progressed(self, done: int, total: int) -> None:
        self._say(f"Measuring CKA: {done} of {total} probe images through both networks…", "#0b5394")

    def _succeeded(self, mapped: RunCKA) -> None:
        self.mapped = mapped
        self._models = (mapped.teacher_arch, mapped.student_arch)
        self.map.set_result(mapped.result)
        result = mapped.result
        untrained = " The teacher is untrained (the run trains it first)." if mapped.teacher_untrained else ""
        self._say(f"Rows: teacher, columns: student layers; {result.probe_size} test images. Click a cell to "
                  f"select both.{untrained}", colormaps.FOREGROUND)
        self.status.setToolTip("\n".join((self.status.text(), *mapped.notes)))
        self.computed.emit()

    def _failed(self, message: str) -> None:
        self._say(f"Cannot compute the map: {message}", "#b00020")

    def _ended(self) -> None:
        self.compute_button.setText("Compute")

    def models_changed(self, teacher: str, student: str) -> None:
        """The form's models changed: a map of other networks is taken down."""
        if self.mapped is not None and self._models != (teacher, student):
            self.mapped = None
            self.map.set_result(None)
            self.hover.clear()
            self._say(f"The models are now {teacher} and {student}: press Compute for their map.", colormaps.MUTED)

    # ---- the map ------------------------------------------------------------------------------
    def _cell_clicked(self, i: int, j: int) -> None:
        result = self.result
        self.hover.setText(self.map.hover_text(i, j))
        self.pairChosen.emit(result.teacher_layers[i].path, result.student_layers[j].path)

    def _cell_hovered(self, i: int, j: int) -> None:
        if i >= 0:
            self.hover.setText(self.map.hover_text(i, j))
            self.hover.setToolTip(self.hover.text())

    def _say(self, text: str, colour: str) -> None:
        self.status.setStyleSheet(f"color: {colour};")
        self.status.setText(text)
        self.status.setToolTip(text)

    def shutdown(self, timeout: float = 60.0) -> bool:
        if self.task.running:
            self.task.cancel()
        return self.task.wait(timeout)
