"""Live training plots: the loss components against step and the accuracies against epoch.

Both widgets take the trainer's events in batches (the window coalesces them and flushes on a timer,
about 10 times a second), so every ``add_*`` call does one append per curve and one ``setData`` per
changed curve, however many events the batch holds.

Loss series live in numpy buffers that double when full (amortised O(1) appends); curves receive
views of those buffers. Long series stay fast through pyqtgraph's peak down-sampling (at most about
two points per pixel column are drawn) and clip-to-view once the user zooms in.

Repaints stay cheap: new points reach pyqtgraph at most :data:`REDRAW_INTERVAL_S` apart (10 times
a second; a timer catches up when the data stops) and not at all while the plot is hidden; and the
auto-range fits a box with round edges around the curves (see :class:`RangeAnchor`) rather than the
curves themselves, so the axes, whose ticks, labels and grid are most of a repaint, are recomputed
only when the data crosses an edge of the box, not at every update.

A run has stages (``"teacher"``, ``"init"``, ``"student"``) whose steps and epochs each restart at 1,
so each plot shows one stage at a time, picked in a small "stage" box. The box follows the run
(the student stage when there is one, else the newest stage) until the user picks a stage by hand;
the window also announces each stage as it starts (:meth:`LossPlot.note_stage`), so the box names
the stage under way before its first point arrives.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from app import colormaps
from app.rounding import round_up
from featdistill_core import EpochEvent, Stage, StepEvent

MAIN_STAGE = Stage.STUDENT.value
TOTAL = "total"
LOG_FLOOR = 1e-6          # values below this are drawn at this value on a log axis (log of ≤ 0 is NaN)
MAX_SMOOTHING = 0.999
THROTTLE_FROM = 50_000    # curves longer than this are redrawn only when the new points show (see LossPlot)
REDRAW_LAG_S = 0.5        # ... or when this long has passed since their last redraw
REDRAW_INTERVAL_S = 0.1   # new points reach pyqtgraph at most this often (10 Hz)
ROUND_MANTISSAS = (1.0, 2.0, 5.0)   # right end of the step axis (× 10^k), at most the stage's length
Y_DIVISIONS = 8           # the loss axis's box edges are multiples of about (max − min) / 8
LOG_Y_STEP = 0.25         # ... or, on a log axis, quarter decades
EMPTY_BOX = (0.0, 1.0, 0.0, 1.0)   # the range while the plotted stage has no point yet


# --------------------------------------------------------------------------------------------------
# data helpers (no Qt)


class GrowableArray:
    """A 1-D float64 array that grows by doubling its buffer, so ``n`` appends cost O(n) in total.

    ``view()`` returns the filled part without copying; a later append that outgrows the buffer
    moves the data, so take a fresh view after every append.
    """

    def __init__(self, capacity: int = 1024):
        self._buffer = np.empty(max(1, int(capacity)), dtype=np.float64)
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def extend(self, values) -> None:
        values = np.asarray(values, dtype=np.float64).ravel()
        needed = self._size + values.size
        if needed > self._buffer.size:
            capacity = self._buffer.size
            while capacity < needed:
                capacity *= 2
            grown = np.empty(capacity, dtype=np.float64)
            grown[: self._size] = self._buffer[: self._size]
            self._buffer = grown
        self._buffer[self._size:needed] = values
        self._size = needed

    def view(self) -> np.ndarray:
        return self._buffer[: self._size]

    def last(self) -> float:
        return float(self._buffer[self._size - 1])

    def clear(self) -> None:
        self._size = 0


def ema(values, alpha: float, initial: float | None = None) -> np.ndarray:
    """Exponential moving average: ``s[i] = alpha·s[i-1] + (1 − alpha)·y[i]``.

    ``s[-1]`` is ``initial`` when given (to continue an earlier run of the filter), otherwise the
    series starts at its first value (``s[0] = y[0]``). ``alpha = 0`` returns the values unchanged.
    Non-finite values (a diverged loss) stay non-finite in the output and are skipped by the filter.

    Vectorised in blocks: within a block, ``s[j] = alpha^(j+1)·s_prev + (1 − alpha)·alpha^j ·
    Σ_{k≤j} alpha^(−k)·y[k]``, with blocks short enough that ``alpha^(−k)`` stays far from overflow.
    """
    if not 0.0 <= alpha <= MAX_SMOOTHING:
        raise ValueError(f"smoothing must be between 0 and {MAX_SMOOTHING}, got {alpha}")
    y = np.asarray(values, dtype=np.float64).ravel()
    finite = np.isfinite(y)
    if not finite.all():
        out = np.full_like(y, np.nan)
        out[finite] = ema(y[finite], alpha, initial)
        out[~finite] = y[~finite]
        return out
    if y.size == 0 or alpha == 0.0:
        return y.copy()
    previous = float(y[0]) if initial is None else float(initial)
    block = max(1, min(4096, int(math.log(1e150) / -math.log(alpha))))
    k = np.arange(block, dtype=np.float64)
    power = alpha ** k            # alpha^j
    inverse = alpha ** -k         # alpha^-k
    out = np.empty_like(y)
    for start in range(0, y.size, block):
        chunk = y[start:start + block]
        m = chunk.size
        done = alpha * power[:m] * previous + (1.0 - alpha) * power[:m] * np.cumsum(chunk * inverse[:m])
        out[start:start + m] = done
        previous = float(done[-1])
    return out


def round_above(value: float) -> float:
    """The smallest of :data:`ROUND_MANTISSAS` × 10^k that is ≥ ``value`` (``value`` > 0), else 1."""
    return round_up(value, ROUND_MANTISSAS)


def round_step(span: float) -> float:
    """A grid step of 1, 2, 2.5 or 5 × 10^k, about ``span / Y_DIVISIONS``."""
    return round_up(span / Y_DIVISIONS) if math.isfinite(span) and span > 0 else 1.0


def round_box(x_lo: float, x_hi: float, y_lo: float, y_hi: float, log_y: bool,
              x_limit: float | None = None) -> tuple[float, float, float, float]:
    """A box with round edges around the data ``[x_lo, x_hi] × [y_lo, y_hi]``, in view coordinates.

    x runs from the first step to :func:`round_above` the last, but not beyond ``x_limit`` (the
    stage's planned steps) when that is at least the last step: early in a long stage the curves
    fill 40 % or more of the width and the end moves about 3 times per tenfold growth; the finished
    stage fills all of it. y runs from ``⌊y_lo / s⌋·s`` to ``⌈y_hi / s⌉·s`` with
    ``s = round_step(y_hi − y_lo)``, or on a log axis (``y`` > 0, view coordinates ``log10 y``) to
    the enclosing quarter decades. The box changes only when the data crosses one of its edges (or
    the y span crosses a step size).
    """
    x_end = round_above(x_hi) if x_hi > x_lo else x_lo + 1.0
    if x_limit is not None and x_hi <= x_limit < x_end and x_limit > x_lo:
        x_end = float(x_limit)
    if log_y:
        low, high = math.log10(y_lo), math.log10(y_hi)
        y0 = math.floor(low / LOG_Y_STEP) * LOG_Y_STEP
        y1 = math.ceil(high / LOG_Y_STEP) * LOG_Y_STEP
        return x_lo, x_end, y0, y1 if y1 > y0 else y0 + LOG_Y_STEP
    step = round_step(y_hi - y_lo) if y_hi > y_lo else round_step(abs(y_hi) or 1.0)
    y0 = math.floor(y_lo / step) * step
    y1 = math.ceil(y_hi / step) * step
    return x_lo, x_end, y0, y1 if y1 > y0 else y0 + step


def curve_name(stage: str, component: str) -> str:
    """The public name of a loss curve: the component for the student stage, else ``"<stage> <component>"``."""
    return component if stage == MAIN_STAGE else f"{stage} {component}"


# --------------------------------------------------------------------------------------------------
# the stage box shared by both plots


class StageSelector(QtWidgets.QComboBox):
    """A combo box of the run's stages that follows the run until the user picks one.

    While following it shows the student stage when there is one, else the newest stage seen.
    Emits ``stageChanged(str)`` whenever the shown stage changes (by the user or by following).
    """

    stageChanged = QtCore.Signal(str)

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setToolTip("Which stage of the run to plot (steps and epochs restart in every stage)")
        self.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToContents)
        self._following = True
        self.activated.connect(self._picked_by_user)
        self.currentTextChanged.connect(self._emit_changed)

    def stage(self) -> str | None:
        return self.currentText() or None

    def note_stages(self, stages: Iterable[str]) -> None:
        """Add stages seen in a batch (in order) and, while following, move to the one to show."""
        newest = None
        for stage in stages:
            if self.findText(stage) < 0:
                self.addItem(stage)
            newest = stage
        if self._following and newest is not None:
            target = MAIN_STAGE if self.findText(MAIN_STAGE) >= 0 else newest
            self.setCurrentIndex(self.findText(target))

    def select(self, stage: str) -> None:
        """Show ``stage`` and stop following the run (what a user's pick does)."""
        index = self.findText(stage)
        if index < 0:
            known = ", ".join(self.itemText(i) for i in range(self.count())) or "none yet"
            raise ValueError(f"unknown stage {stage!r}; stages seen: {known}")
        self._following = False
        self.setCurrentIndex(index)

    def reset(self) -> None:
        self.blockSignals(True)
        self.clear()
        self.blockSignals(False)
        self._following = True

    def _picked_by_user(self, _index: int) -> None:
        self._following = False

    def _emit_changed(self, text: str) -> None:
        if text:
            self.stageChanged.emit(text)


class RangeAnchor(pg.GraphicsObject):
    """An invisible item whose data bounds are a given box: what the plot's auto-range then fits.

    pyqtgraph's auto-range fits the view to the union of its items' bounds. The curves' own bounds
    move with every new step, so every update changed the view range, and both axes recomputed and
    redrew their ticks, labels and grid lines (most of a repaint). With this item in the plot,
    holding a round box around every curve (:func:`round_box`), the union is the box, and the range
    changes only when the box does. Zooming and the "auto-range" button work as usual.
    """

    def __init__(self):
        super().__init__()
        self.box: tuple[float, float, float, float] | None = None    # x0, x1, y0, y1 (view coordinates)

    def set_box(self, box: tuple[float, float, float, float] | None) -> None:
        if box != self.box:
            self.box = box
            self.informViewBoundsChanged()

    def dataBounds(self, axis: int, frac: float = 1.0, orthoRange=None):
        if self.box is None:
            return None
        return self.box[0:2] if axis == 0 else self.box[2:4]

    def boundingRect(self) -> QtCore.QRectF:
        return QtCore.QRectF()

    def paint(self, *args) -> None:
        pass


def _new_plot_widget() -> pg.PlotWidget:
    widget = pg.PlotWidget(background=colormaps.BACKGROUND, axisItems=colormaps.plot_axes())
    widget.setMinimumSize(240, 160)
    return widget


# --------------------------------------------------------------------------------------------------
# loss plot


class _LossCurve:
    """One loss component of one stage: raw values, the displayed values and its plot item."""

    def __init__(self, name: str, stage: str, component: str, item: pg.PlotDataItem):
        self.name = name
        self.stage = stage
        self.component = component
        self.item = item
        self.x = GrowableArray()
        self.raw = GrowableArray()
        self.shown = GrowableArray()       # smoothed, then clipped to LOG_FLOOR on a log axis
        self.last_smoothed: float | None = None
        self.drawn = 0                     # points the plot item holds; -1: its values are out of date
        self.on_plot = False               # whether the item is on the plot (and in the legend)
        self.planned = 0                   # the stage's planned steps (StepEvent.total_steps)
        self.drawn_at = 0.0                # time.monotonic() of the last hand-over
        self.all_finite = True             # lets pyqtgraph skip its O(n) finite checks per update
        self.low = math.inf                # smallest and largest finite shown value
        self.high = -math.inf

    def append(self, x: np.ndarray, y: np.ndarray, alpha: float, log_y: bool) -> None:
        self.x.extend(x)
        self.raw.extend(y)
        self.all_finite = self.all_finite and bool(np.isfinite(y).all())
        smoothed = ema(y, alpha, self.last_smoothed) if alpha > 0 else y
        self._remember_last(smoothed)
        shown = np.maximum(smoothed, LOG_FLOOR) if log_y else smoothed
        self.shown.extend(shown)
        self._widen(shown)

    def _widen(self, shown: np.ndarray) -> None:
        finite = shown[np.isfinite(shown)]
        if finite.size:
            self.low = min(self.low, float(finite.min()))
            self.high = max(self.high, float(finite.max()))

    def behind(self) -> bool:
        """Whether the plot item lacks points or shows outdated values."""
        return self.drawn != len(self.x)

    def recompute(self, alpha: float, log_y: bool) -> None:
        self.drawn = -1
        raw = self.raw.view()
        smoothed = ema(raw, alpha) if alpha > 0 else raw
        self.last_smoothed = None
        self._remember_last(smoothed)
        self.shown.clear()
        self.shown.extend(np.maximum(smoothed, LOG_FLOOR) if log_y else smoothed)
        self.low, self.high = math.inf, -math.inf
        self._widen(self.shown.view())

    def _remember_last(self, smoothed: np.ndarray) -> None:
        finite = smoothed[np.isfinite(smoothed)]
        if finite.size:
            self.last_smoothed = float(finite[-1])

    def push_to_item(self) -> None:
        # steps are finite, and smoothing and clipping keep finite values finite
        self.item.setSkipFiniteCheck(self.all_finite)
        self.item.setData(self.x.view(), self.shown.view())
        self.drawn = len(self.x)
        self.drawn_at = time.monotonic()

    def take_off(self) -> None:
        """Empty the item before it leaves the plot (see LossPlot._show_stage)."""
        self.item.setData([], [])
        self.drawn = -1


class LossPlot(QtWidgets.QWidget):
    """The total loss and every weighted loss component against step, one stage at a time.

    Curves appear as new component names arrive. Click a legend entry to hide or show its curve.
    ``smoothing`` is the EMA factor ``alpha`` of :func:`ema` (0 = raw); it changes only what is drawn,
    :meth:`curve_data` always returns the raw values.

    New points reach pyqtgraph at most every ``redraw_interval_s`` seconds (:data:`REDRAW_INTERVAL_S`;
    a new curve at once), and not while the plot is hidden (it catches up when shown). Handing a
    curve over costs O(n) (bounds, down-sampling), so a curve longer than THROTTLE_FROM points is
    redrawn only once its new points fill at least one pixel column of the plot, or REDRAW_LAG_S
    after its last redraw. Below that, and whenever the user has zoomed in, every due batch is drawn.
    A timer catches up with whatever is left when the data stops. A stage's curves go on the plot
    (and in the legend, right of the plot) one per event-loop turn; :meth:`plot_items` puts them all
    on at once. The auto-range fits a :class:`RangeAnchor` box, not the curves themselves.
    """

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("lossPlot")
        self._curves: dict[str, _LossCurve] = {}
        self._alpha = 0.0
        self._log_y = False
        self.redraw_interval_s = REDRAW_INTERVAL_S
        self._last_redraw = -math.inf            # time.monotonic() of the last hand-over
        self._catch_up = QtCore.QTimer(self)
        self._catch_up.setSingleShot(True)
        self._catch_up.timeout.connect(self.redraw)
        self._to_place: list[_LossCurve] = []    # curves of the shown stage waiting to go on the plot
        self._place_timer = QtCore.QTimer(self)   # puts them there one per event-loop turn
        self._place_timer.setSingleShot(True)
        self._place_timer.setInterval(0)
        self._place_timer.timeout.connect(self._place_next)

        self.stage_box = StageSelector()
        self.stage_box.setObjectName("lossStage")
        self.smoothing_box = QtWidgets.QDoubleSpinBox()
        self.smoothing_box.setObjectName("lossSmoothing")
        self.smoothing_box.setRange(0.0, MAX_SMOOTHING)
        self.smoothing_box.setDecimals(3)
        self.smoothing_box.setSingleStep(0.05)
        self.smoothing_box.setToolTip("Exponential moving average of the drawn curves: "
                                      "s = α·s_prev + (1 − α)·loss. 0 draws the raw values.")
        self.log_box = QtWidgets.QCheckBox("log y")
        self.log_box.setObjectName("lossLogY")
        self.log_box.setToolTip(f"Logarithmic loss axis (values ≤ {LOG_FLOOR:g} are drawn at {LOG_FLOOR:g})")

        controls = QtWidgets.QHBoxLayout()
        controls.setContentsMargins(0, 0, 0, 0)
        controls.addWidget(QtWidgets.QLabel("stage"))
        controls.addWidget(self.stage_box)
        controls.addSpacing(12)
        controls.addWidget(QtWidgets.QLabel("smoothing"))
        controls.addWidget(self.smoothing_box)
        controls.addSpacing(12)
        controls.addWidget(self.log_box)
        controls.addStretch(1)

        self.plot_widget = _new_plot_widget()
        self.plot_item: pg.PlotItem = self.plot_widget.getPlotItem()
        colormaps.style_plot_item(self.plot_item, x_label="step", y_label="loss", title="Loss")
        self.legend = colormaps.make_side_legend(self.plot_item, colormaps.SIDE_LEGEND_MIN_PX)
        self._anchor = RangeAnchor()
        self.plot_item.getViewBox().addItem(self._anchor)
        # PlotItem.addItem applies the plot's own down-sampling and clip settings to every curve
        # it receives (overriding the curve's), so they are set here, on the plot
        self.plot_item.setDownsampling(auto=True, mode="peak")
        self.plot_item.setClipToView(True)

        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 0)
        layout.addLayout(controls)
        layout.addWidget(self.plot_widget, 1)

        self.stage_box.stageChanged.connect(self._show_stage)
        self.smoothing_box.valueChanged.connect(self.set_smoothing)
        self.log_box.toggled.connect(self.set_log_y)

    # -- public API ---------------------------------------------------------------------------

    def add_steps(self, events: Sequence[StepEvent]) -> None:
        """Append a batch of step events: one point per component (and the total) per event."""
        if not events:
            return
        batches: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
        stages: list[str] = []
        planned: dict[str, int] = {}
        for event in events:
            planned[event.stage] = int(event.total_steps)
            if not stages or stages[-1] != event.stage:
                stages.append(event.stage)
            for component, value in ((TOTAL, event.total), *event.losses.items()):
                xs, ys = batches.setdefault((event.stage, component), ([], []))
                xs.append(event.step)
                ys.append(value)
        for (stage, component), (xs, ys) in batches.items():
            curve = self._curve(stage, component)
            curve.append(np.asarray(xs, np.float64), np.asarray(ys, np.float64), self._alpha, self._log_y)
            curve.planned = planned[stage]
        self.stage_box.note_stages(stages)
        self.redraw()

    def redraw(self, force: bool = False) -> None:
        """Hand the shown stage's new points to pyqtgraph: all of them with ``force``, else those due."""
        if not force and not self.isVisible():
            return                              # showEvent catches up
        now = time.monotonic()
        throttled = not force and now - self._last_redraw < self.redraw_interval_s
        stage = self.stage_box.stage()
        waiting = drew = False
        for curve in self._curves.values():
            if curve.stage == stage and curve.on_plot and curve.behind():
                if force or curve.drawn <= 0 or (not throttled and self._redraw_due(curve, now)):
                    curve.push_to_item()
                    drew = True
                else:
                    waiting = True
        if drew:
            self._last_redraw = now
        self._update_box()
        if waiting and not self._catch_up.isActive():
            wait = self._last_redraw + self.redraw_interval_s - now if throttled else REDRAW_LAG_S
            self._catch_up.start(max(1, math.ceil(1000 * wait)))

    def note_stage(self, stage: str) -> None:
        """A stage has started: list it in the stage box (and show it while following the run)."""
        self.stage_box.note_stages([stage])

    def clear(self) -> None:
        """Remove every curve and forget every stage."""
        self._catch_up.stop()
        self._place_timer.stop()
        self._to_place.clear()
        if self._curves:                  # (an empty plot is left alone: no relayout, no repaint)
            for curve in self._curves.values():
                if curve.on_plot:
                    self.plot_item.removeItem(curve.item)
            self._curves.clear()
            self.legend.clear()
        self.stage_box.reset()
        self._anchor.set_box(None)
        self._last_redraw = -math.inf

    def curve_names(self) -> list[str]:
        """Every curve's name in order of arrival: ``"total"``, ``"ce"``, ``"teacher total"``, ..."""
        return list(self._curves)

    def curve_data(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The raw (unsmoothed, unclipped) steps and values of curve ``name`` (copies)."""
        curve = self._named(name)
        return curve.x.view().copy(), curve.raw.view().copy()

    def displayed_data(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """What is drawn for curve ``name``: smoothed, and clipped to LOG_FLOOR on a log axis."""
        curve = self._named(name)
        return curve.x.view().copy(), curve.shown.view().copy()

    def set_smoothing(self, alpha: float) -> None:
        """Draw an EMA with factor ``alpha`` (0 ≤ alpha ≤ 0.999) instead of the raw values."""
        alpha = float(alpha)
        if not 0.0 <= alpha <= MAX_SMOOTHING:
            raise ValueError(f"smoothing must be between 0 and {MAX_SMOOTHING}, got {alpha}")
        if alpha == self._alpha:
            return
        self._alpha = alpha
        self._sync_control(self.smoothing_box, alpha)
        self._recompute_all()

    def smoothing(self) -> float:
        return self._alpha

    def set_log_y(self, on: bool) -> None:
        """Use a logarithmic loss axis; values ≤ LOG_FLOOR are drawn at LOG_FLOOR."""
        on = bool(on)
        if on == self._log_y:
            return
        self._log_y = on
        self._sync_control(self.log_box, on)
        self._recompute_all()
        self.plot_item.setLogMode(y=on)

    def log_y(self) -> bool:
        return self._log_y

    def stage(self) -> str | None:
        """The stage whose curves are on the plot."""
        return self.stage_box.stage()

    def set_stage(self, stage: str) -> None:
        """Plot ``stage`` and stop following the run."""
        self.stage_box.select(stage)
        self._place_all()

    def is_curve_visible(self, name: str) -> bool:
        """Whether curve ``name`` is drawn (it must also belong to the plotted stage to be seen)."""
        self._place_all()
        return self._named(name).item.isVisible()

    def plot_items(self) -> dict[str, pg.PlotDataItem]:
        """Each curve's PlotDataItem by curve name (for tests and exporters); the shown stage's are on the plot."""
        self._place_all()
        return {name: curve.item for name, curve in self._curves.items()}

    # -- internals ----------------------------------------------------------------------------

    def _named(self, name: str) -> _LossCurve:
        try:
            return self._curves[name]
        except KeyError:
            known = ", ".join(self._curves) or "none yet"
            raise KeyError(f"no loss curve named {name!r}; curves: {known}") from None

    def _curve(self, stage: str, component: str) -> _LossCurve:
        name = curve_name(stage, component)
        curve = self._curves.get(name)
        if curve is None:
            if component == TOTAL:
                colour = colormaps.TOTAL_COLOUR
            else:
                siblings = sum(1 for c in self._curves.values() if c.stage == stage and c.component != TOTAL)
                colour = colormaps.palette_colour(siblings)
            item = pg.PlotDataItem(pen=pg.mkPen(colour, width=1), name=component)
            curve = self._curves[name] = _LossCurve(name, stage, component, item)
            if stage == self.stage_box.stage():
                self._queue_placement(curve)
        return curve

    def _queue_placement(self, curve: _LossCurve) -> None:
        if curve not in self._to_place:
            self._to_place.append(curve)
        if not self._place_timer.isActive():
            self._place_timer.start()

    def _place_next(self) -> None:
        """Put the next waiting curve on the plot with its data.

        One per event-loop turn: each costs a legend entry and a relayout of the plot, and a stage
        that starts with many components would otherwise hold the window up for all of them at once.
        """
        while self._to_place:
            curve = self._to_place.pop(0)
            if curve.on_plot or curve.stage != self.stage_box.stage():
                continue
            self.plot_item.addItem(curve.item, ignoreBounds=True)    # the range anchor covers it
            curve.on_plot = True
            if curve.behind():
                curve.push_to_item()
            break
        if self._to_place:
            self._place_timer.start()

    def _place_all(self) -> None:
        while self._to_place:
            self._place_next()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.redraw(force=True)

    def _redraw_due(self, curve: _LossCurve, now: float) -> bool:
        count = len(curve.x)
        if curve.drawn <= 0 or count <= THROTTLE_FROM:
            return True
        view = self.plot_item.getViewBox()
        if not view.autoRangeEnabled()[0]:
            return True                     # zoomed in by hand: each new point may be visible
        points_per_column = count / max(view.width(), 200.0)
        return count - curve.drawn >= points_per_column or now - curve.drawn_at >= REDRAW_LAG_S

    def _update_box(self) -> None:
        """Give the range anchor a round box around the shown stage's curves (see RangeAnchor)."""
        stage = self.stage_box.stage()
        curves = [c for c in self._curves.values() if c.stage == stage and len(c.x) and c.low <= c.high]
        if not curves:              # (a stage just started: not the previous stage's range)
            self._anchor.set_box(EMPTY_BOX if self._curves else None)
            return
        x_lo = min(float(c.x.view()[0]) for c in curves)
        x_hi = max(c.x.last() for c in curves)
        y_lo = min(c.low for c in curves)
        y_hi = max(c.high for c in curves)
        planned = max((c.planned for c in curves), default=0) or None
        self._anchor.set_box(round_box(x_lo, x_hi, y_lo, y_hi, self._log_y, planned))

    def _show_stage(self, stage: str) -> None:
        """Put the curves of ``stage`` on the plot (and in the legend) and take the others off.

        The new curves go on one per event-loop turn (see :meth:`_place_next`). A curve leaves the
        plot empty and gets its data back after it is re-added: pyqtgraph's clip-to-view fails on an
        item that holds data while it is being added to a plot.
        """
        self._to_place = [c for c in self._to_place if c.stage == stage]
        for curve in self._curves.values():
            if curve.stage == stage:
                if not curve.on_plot:
                    self._queue_placement(curve)
                elif curve.behind():
                    curve.push_to_item()
            elif curve.on_plot:
                curve.take_off()
                self.plot_item.removeItem(curve.item)
                curve.on_plot = False
        self._update_box()
        self.plot_item.enableAutoRange()

    def _recompute_all(self) -> None:
        for curve in self._curves.values():
            curve.recompute(self._alpha, self._log_y)
        self.redraw(force=True)

    @staticmethod
    def _sync_control(control: QtWidgets.QWidget, value) -> None:
        control.blockSignals(True)
        if isinstance(control, QtWidgets.QAbstractButton):
            control.setChecked(value)
        else:
            control.setValue(value)
        control.blockSignals(False)


# --------------------------------------------------------------------------------------------------
# accuracy plot


class AccuracyPlot(QtWidgets.QWidget):
    """Top-1 train and test accuracy per epoch, with the teacher's test accuracy as a dashed line.

    Series names: ``"train"``, ``"test"`` (student stage), ``"<stage> train"``/``"<stage> test"``
    for other stages, and ``"teacher"`` for the reference line. An epoch reported twice keeps its
    latest value. New epochs are drawn on the next event-loop turn, so that their repaint is not
    added to the loss plot's (epochs end with a burst of events); :meth:`plot_items` draws at once.
    """

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("accuracyPlot")
        self._values: dict[str, dict[int, float]] = {}    # series name -> {epoch: accuracy}
        self._stage_epochs: dict[str, int] = {}           # planned epochs per stage
        self._teacher_acc: float | None = None

        self.stage_box = StageSelector()
        self.stage_box.setObjectName("accuracyStage")
        controls = QtWidgets.QHBoxLayout()
        controls.setContentsMargins(0, 0, 0, 0)
        controls.addWidget(QtWidgets.QLabel("stage"))
        controls.addWidget(self.stage_box)
        controls.addStretch(1)

        self.plot_widget = _new_plot_widget()
        self.plot_item: pg.PlotItem = self.plot_widget.getPlotItem()
        colormaps.style_plot_item(self.plot_item, x_label="epoch", y_label="top-1 accuracy (%)",
                                  title="Accuracy")
        self.legend = colormaps.make_side_legend(self.plot_item)     # right of the plot: covers no point
        self.legend.set_wanted(False)                                  # until there is data

        train_colour, test_colour = colormaps.palette_colour(0), colormaps.palette_colour(1)
        self._train_item = self.plot_item.plot(
            pen=pg.mkPen(train_colour, width=1), symbol="o", symbolSize=6,
            symbolBrush=train_colour, symbolPen=None, name="train")
        self._test_item = self.plot_item.plot(
            pen=pg.mkPen(test_colour, width=1), symbol="s", symbolSize=6,
            symbolBrush=test_colour, symbolPen=None, name="test")
        self._teacher_item = self.plot_item.plot(
            pen=pg.mkPen(colormaps.MUTED, width=1, style=QtCore.Qt.PenStyle.DashLine), name="teacher")
        self._teacher_label = pg.TextItem(color=colormaps.MUTED, anchor=(1.0, 0.0))   # under the line's end
        self._teacher_label.setVisible(False)
        self.plot_item.addItem(self._teacher_label, ignoreBounds=True)

        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 0)
        layout.addLayout(controls)
        layout.addWidget(self.plot_widget, 1)
        self._redraw_timer = QtCore.QTimer(self)
        self._redraw_timer.setSingleShot(True)
        self._redraw_timer.setInterval(0)
        self._redraw_timer.timeout.connect(self._redraw)
        self.stage_box.stageChanged.connect(lambda _stage: self._redraw_timer.start())

    def add_epochs(self, events: Sequence[EpochEvent]) -> None:
        """Record a batch of epoch events and redraw once."""
        if not events:
            return
        for event in events:
            self._values.setdefault(curve_name(event.stage, "train"), {})[event.epoch] = float(event.train_acc)
            self._values.setdefault(curve_name(event.stage, "test"), {})[event.epoch] = float(event.test_acc)
            self._stage_epochs[event.stage] = max(int(event.epochs), self._stage_epochs.get(event.stage, 0))
            if event.teacher_acc is not None:
                self._teacher_acc = float(event.teacher_acc)
        self.stage_box.note_stages(event.stage for event in events)
        self._redraw_timer.start()

    def note_stage(self, stage: str) -> None:
        """A stage has started: list it in the stage box before its first epoch ends."""
        self.stage_box.note_stages([stage])

    def clear(self) -> None:
        had_data = bool(self._values) or self._teacher_acc is not None
        self._values.clear()
        self._stage_epochs.clear()
        self._teacher_acc = None
        self.stage_box.reset()
        if had_data:                      # (an empty plot is left alone: no repaint)
            self._redraw()

    def series_names(self) -> list[str]:
        names = list(self._values)
        return names + ["teacher"] if self._teacher_acc is not None else names

    def series(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Epochs and accuracies (%) of ``"train"``, ``"test"``, ``"<stage> train"``... or ``"teacher"``.

        The teacher's series is its reference line: the planned epochs' first and last, at the
        teacher's accuracy. Unknown names raise KeyError; a known name with no data yet is empty.
        """
        if name == "teacher":
            return self._teacher_line()
        if name not in self._values and name not in ("train", "test"):
            known = ", ".join(self.series_names()) or "none yet"
            raise KeyError(f"no accuracy series named {name!r}; series: {known}")
        values = self._values.get(name, {})
        epochs = np.array(sorted(values), dtype=np.float64)
        return epochs, np.array([values[int(e)] for e in epochs], dtype=np.float64)

    def stage(self) -> str | None:
        return self.stage_box.stage()

    def set_stage(self, stage: str) -> None:
        self.stage_box.select(stage)

    def plot_items(self) -> dict[str, pg.PlotDataItem]:
        """The train, test and teacher items, with every epoch received drawn."""
        if self._redraw_timer.isActive():
            self._redraw()
        return {"train": self._train_item, "test": self._test_item, "teacher": self._teacher_item}

    def _teacher_line(self) -> tuple[np.ndarray, np.ndarray]:
        if self._teacher_acc is None:
            return np.empty(0), np.empty(0)
        stage = self.stage_box.stage() or MAIN_STAGE
        last = max(self._stage_epochs.get(stage, 1), 2)
        return np.array([1.0, float(last)]), np.full(2, self._teacher_acc)

    def _redraw(self) -> None:
        self._redraw_timer.stop()
        stage = self.stage_box.stage() or MAIN_STAGE
        shown = (curve_name(stage, "train") in self._values or curve_name(stage, "test") in self._values
                 or self._teacher_acc is not None)
        self.legend.set_wanted(shown)                 # no legend over an empty plot
        train = self._series_or_empty(curve_name(stage, "train"))
        test = self._series_or_empty(curve_name(stage, "test"))
        self._train_item.setData(*train)
        self._test_item.setData(*test)
        x, y = self._teacher_line()
        self._teacher_item.setData(x, y)
        if self._teacher_acc is None:
            self._teacher_label.setVisible(False)
        else:
            # under the line's end, or above it when the line is in the lower half of the points
            # (under it, the label would leave the plot)
            values = np.concatenate([train[1], test[1], [self._teacher_acc]])
            low_line = self._teacher_acc < (values.min() + values.max()) / 2
            self._teacher_label.setAnchor((1.0, 1.0) if low_line else (1.0, 0.0))
            self._teacher_label.setText(f"teacher {self._teacher_acc:.1f} %")
            self._teacher_label.setPos(float(x[-1]), self._teacher_acc)
            self._teacher_label.setVisible(True)

    def _series_or_empty(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        return self.series(name) if name in self._values else (np.empty(0), np.empty(0))
