"""Live training plots: the loss components against step and the accuracies against epoch.

Both widgets take the trainer's events in batches (the window coalesces them and flushes on a timer,
about 4 times a second), so every ``add_*`` call does one append per curve and one ``setData`` per
changed curve, however many events the batch holds.

Loss series live in numpy buffers that double when full (amortised O(1) appends); curves receive
views of those buffers. Long series stay fast through pyqtgraph's peak down-sampling (at most about
two points per pixel column are drawn) and clip-to-view once the user zooms in.

Repaints stay cheap: new points reach pyqtgraph at most :data:`REDRAW_INTERVAL_S` apart (once
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
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from app import colormaps
from app.pacing import PacedTimer
from app.plot_tools import ExportButtons, HoverReadout, Series, save_widget_png, spans_decades, write_csv
from app.rounding import round_up
from featdistill_core import EpochEvent, Stage, StepEvent

MAIN_STAGE = Stage.STUDENT.value
TOTAL = "total"
LOG_FLOOR = 1e-6          # values below this are drawn at this value on a log axis (log of ≤ 0 is NaN)
MAX_SMOOTHING = 0.999
THROTTLE_FROM = 50_000    # curves longer than this are redrawn only when the new points show (see LossPlot)
REDRAW_LAG_S = 0.5        # ... or when this long has passed since their last redraw
REDRAW_INTERVAL_S = 1.0   # new points reach pyqtgraph at most this often (once a second)
# Work that comes in bursts is spread over the event loop, so that no repaint adds to another's and
# the window answers input in between: a stage's new curves go on the plot one per PIECE_INTERVAL_MS,
# and new epochs are drawn ACCURACY_DELAY_MS after they arrive (after the loss plot's repaint of the
# same hand-over, not with it).
PIECE_INTERVAL_MS = 20
ACCURACY_DELAY_MS = 150
REDRAW_SOON_MS = 5         # a hand-over of steps returns at once; their redraw (and repaint) come 5 ms later
ROUND_MANTISSAS = (1.0, 2.0, 5.0)   # right end of the step axis (× 10^k), at most the stage's length
Y_DIVISIONS = 8           # the loss axis's box edges are multiples of about (max − min) / 8
LOG_Y_STEP = 0.25         # ... or, on a log axis, quarter decades
SHORT_STAGE_STEPS = 1000  # the step axis spans a stage this short from its start ...
WHOLE_STAGE_FROM = 0.2    # ... a longer one, once this share of its steps is done
SPARE_PAIRS = 8           # curves' plot items made ahead of a stage (see _SpareItems) ...
SPARE_DELAY_MS = 1500     # ... from this long after the plot is shown or some were taken
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

    Every change of the box lays both axes out again, the costliest repaint of a plot (up to ~15 ms
    while a run trains on the build machine), so the box is made to change seldom:

    * x spans the whole stage, to its planned steps ``x_limit``, with the curves growing into it (as
      fastai's live plot does): from the first step for a stage of at most
      :data:`SHORT_STAGE_STEPS` steps (a few minutes on a CPU at most); in a longer one, the box
      first runs to :func:`round_above` the last step (the curves fill 50 % or more of the width;
      the end moves 3 times per tenfold growth) until :data:`WHOLE_STAGE_FROM` of the stage is
      done. A wrong plan, exceeded by the data, is ignored;
    * y of losses that are all ≥ 0 runs from 0 to ``⌈y_hi / s⌉·s`` with ``s = round_step(y_hi)``:
      as a loss falls the box stays; it grows only when a value exceeds its top. With a negative
      value: from ``⌊y_lo / s⌋·s`` with ``s = round_step(y_hi − y_lo)``. On a log axis (``y`` > 0,
      view coordinates ``log10 y``): the enclosing quarter decades.
    """
    x_end = round_above(x_hi) if x_hi > x_lo else x_lo + 1.0
    if x_limit is not None and x_limit > x_lo and x_hi <= x_limit:
        length = x_limit - x_lo
        if length <= SHORT_STAGE_STEPS or x_hi - x_lo >= WHOLE_STAGE_FROM * length or x_end > x_limit:
            x_end = float(x_limit)
    if log_y:
        low, high = math.log10(y_lo), math.log10(y_hi)
        y0 = math.floor(low / LOG_Y_STEP) * LOG_Y_STEP
        y1 = math.ceil(high / LOG_Y_STEP) * LOG_Y_STEP
        return x_lo, x_end, y0, y1 if y1 > y0 else y0 + LOG_Y_STEP
    if y_lo >= 0:
        step = round_step(y_hi) if y_hi > 0 else 1.0
        return x_lo, x_end, 0.0, math.ceil(y_hi / step) * step if y_hi > 0 else step
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
            view = self.getViewBox()
            if view is not None and any(view.autoRangeEnabled()):
                # The new range now, in this piece of drawing: left to the next repaint, pyqtgraph
                # changes the range while painting, and the changed axes make it paint again at once.
                view.updateAutoRange()

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
# runs


PRIMARY = ""              # the run the window shows (live, or opened); any other key is a run overlaid on it
PRIMARY_LABEL = "this run"
RAW_ALPHA = 70            # opacity (of 255) of the raw curve drawn faintly under a smoothed one
MARKER_COLOUR = "#9a9a9a"


def _faint(colour: str) -> QtGui.QColor:
    faint = QtGui.QColor(colour)
    faint.setAlpha(RAW_ALPHA)
    return faint


class _Runs:
    """The runs a plot shows, in the order they came (the primary first once it has data), with labels."""

    def __init__(self) -> None:
        self.labels: dict[str, str] = {PRIMARY: PRIMARY_LABEL}
        self.order: list[str] = []

    def note(self, run: str) -> None:
        if run not in self.order:
            if run == PRIMARY:
                self.order.insert(0, run)
            else:
                self.order.append(run)
        self.labels.setdefault(run, run)

    def forget(self, run: str) -> None:
        if run in self.order:
            self.order.remove(run)
        if run != PRIMARY:
            self.labels.pop(run, None)

    def colour(self, run: str) -> str:
        return colormaps.palette_colour(self.order.index(run) if run in self.order else len(self.order))

    def label(self, run: str) -> str:
        return self.labels.get(run, run)


# --------------------------------------------------------------------------------------------------
# loss plot


def _new_item_pair() -> tuple[pg.PlotDataItem, pg.PlotDataItem]:
    """A curve's plot item and the faint raw item under it (which follows its visibility)."""
    item = pg.PlotDataItem(pen=pg.mkPen(TOTAL_PEN, width=1))
    raw = pg.PlotDataItem(pen=pg.mkPen(_faint(TOTAL_PEN), width=1))
    item.visibleChanged.connect(lambda i=item, r=raw: r.setVisible(i.isVisible()))
    return item, raw


class _SpareItems:
    """Item pairs made ahead, while the window is idle, for the curves a stage will bring.

    Making a curve's two PlotDataItems is half the cost of putting it on the plot (~2–4 ms each on
    the build machine, more while a run trains), and a stage's curves all arrive with its first
    steps. The plot keeps :data:`SPARE_PAIRS` pairs in stock, one made per paced piece a while after
    it is shown or after some were taken; a curve takes one when it first needs its items."""

    def __init__(self, parent: QtCore.QObject):
        self._pairs: list[tuple[pg.PlotDataItem, pg.PlotDataItem]] = []
        self._timer = PacedTimer(parent, interval_ms=SPARE_DELAY_MS, name="loss plot: make spare items")
        self._timer.timeout.connect(self._make_one)

    def take(self) -> tuple[pg.PlotDataItem, pg.PlotDataItem]:
        pair = self._pairs.pop() if self._pairs else _new_item_pair()
        self.restock()
        return pair

    def restock(self) -> None:
        """Make pairs until the stock is full, one per piece, from :data:`SPARE_DELAY_MS` on."""
        if len(self._pairs) < SPARE_PAIRS:
            self._timer.start()

    def _make_one(self) -> None:
        if len(self._pairs) < SPARE_PAIRS:
            self._pairs.append(_new_item_pair())
        if len(self._pairs) < SPARE_PAIRS:
            self._timer.start(0)


class _LossCurve:
    """One loss component of one stage of one run: raw values, the displayed values and its plot items.

    The two plot items are made when first asked for (as the curve goes on the plot, one curve per
    event-loop turn): a stage that starts with a dozen components would otherwise spend ~15 ms making
    its items inside one hand-over of steps."""

    def __init__(self, run: str, name: str, stage: str, component: str, make_items=_new_item_pair):
        self._make_pair = make_items       # () -> (item, raw item): a spare pair of the plot's, or new ones
        self.run = run
        self.name = name
        self.stage = stage
        self.component = component
        self.colour = TOTAL_PEN             # its pen's colour and its legend name (see style)
        self.legend_name = component
        self._item: pg.PlotDataItem | None = None
        self._raw_item: pg.PlotDataItem | None = None   # the raw values, faint, under a smoothed curve
        self.x = GrowableArray()
        self.raw = GrowableArray()
        self.shown = GrowableArray()       # smoothed, then clipped to LOG_FLOOR on a log axis
        self.last_smoothed: float | None = None
        self.drawn = 0                     # points the plot item holds; -1: its values are out of date
        self.on_plot = False               # whether the item is on the plot (and in the legend)
        self.raw_on_plot = False
        self.planned = 0                   # the stage's planned steps (StepEvent.total_steps)
        self.drawn_at = 0.0                # time.monotonic() of the last hand-over
        self.all_finite = True             # lets pyqtgraph skip its O(n) finite checks per update
        self.low = math.inf                # smallest and largest finite raw value (clipped on a log axis)
        self.high = -math.inf

    @property
    def item(self) -> pg.PlotDataItem:
        if self._item is None:
            self._make_items()
        return self._item

    @property
    def raw_item(self) -> pg.PlotDataItem:
        if self._raw_item is None:
            self._make_items()
        return self._raw_item

    def _make_items(self) -> None:
        self._item, self._raw_item = self._make_pair()
        self.style(self.colour, self.legend_name)

    def style(self, colour: str, name: str) -> None:
        """Its colour and legend name (applied to its items now if they exist, else when they are made)."""
        self.colour, self.legend_name = colour, name
        if self._item is not None:
            self._item.setPen(pg.mkPen(colour, width=1))
            self._raw_item.setPen(pg.mkPen(_faint(colour), width=1))
            self._item.opts["name"] = name

    def append(self, x: np.ndarray, y: np.ndarray, alpha: float, log_y: bool) -> None:
        self.x.extend(x)
        self.raw.extend(y)
        self.all_finite = self.all_finite and bool(np.isfinite(y).all())
        smoothed = ema(y, alpha, self.last_smoothed) if alpha > 0 else y
        self._remember_last(smoothed)
        self.shown.extend(np.maximum(smoothed, LOG_FLOOR) if log_y else smoothed)
        self._widen(np.maximum(y, LOG_FLOOR) if log_y else y)

    def _widen(self, values: np.ndarray) -> None:
        """The raw values bound the smoothed ones (an EMA is a weighted mean of them): the range
        holds both curves."""
        finite = values[np.isfinite(values)]
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
        self._widen(np.maximum(raw, LOG_FLOOR) if log_y else raw)

    def _remember_last(self, smoothed: np.ndarray) -> None:
        finite = smoothed[np.isfinite(smoothed)]
        if finite.size:
            self.last_smoothed = float(finite[-1])

    def push_to_item(self, log_y: bool) -> None:
        # steps are finite, and smoothing and clipping keep finite values finite
        self.item.setSkipFiniteCheck(self.all_finite)
        self.item.setData(self.x.view(), self.shown.view())
        if self.raw_on_plot:
            raw = self.raw.view()
            self.raw_item.setSkipFiniteCheck(self.all_finite)
            self.raw_item.setData(self.x.view(), np.maximum(raw, LOG_FLOOR) if log_y else raw)
        self.drawn = len(self.x)
        self.drawn_at = time.monotonic()

    def take_off(self) -> None:
        """Empty the items before they leave the plot (see LossPlot._show_selection)."""
        if self._item is not None:
            self._item.setData([], [])
            self._raw_item.setData([], [])
        self.drawn = -1


class LossPlot(QtWidgets.QWidget):
    """The total loss and every weighted loss component against step, one stage at a time.

    Curves appear as new component names arrive. Click a legend entry to hide or show its curve.
    ``smoothing`` is the EMA factor ``alpha`` of :func:`ema` (0 = raw); it changes only what is drawn,
    :meth:`curve_data` always returns the raw values. With smoothing on, the raw values are drawn
    faintly under each smoothed curve.

    **Runs.** The window's own run (live, or opened) is the *primary* run (:data:`PRIMARY`); other runs
    can be laid over it (:meth:`add_run`) to compare them. With one run the plot shows its every
    component, one colour per component. With several it shows one component (the "show" box, the
    total by default) of every run, one colour per run, the legend naming the runs.

    New points reach pyqtgraph at most every ``redraw_interval_s`` seconds (:data:`REDRAW_INTERVAL_S`;
    a new curve at once), and not while the plot is hidden (it catches up when shown). Handing a
    curve over costs O(n) (bounds, down-sampling), so a curve longer than THROTTLE_FROM points is
    redrawn only once its new points fill at least one pixel column of the plot, or REDRAW_LAG_S
    after its last redraw. Below that, and whenever the user has zoomed in, every due batch is drawn.
    A timer catches up with whatever is left when the data stops. A stage's curves go on the plot
    (and in the legend, right of the plot) one per event-loop turn; :meth:`plot_items` puts them all
    on at once. The auto-range fits a :class:`RangeAnchor` box, not the curves themselves.

    With ``auto_log`` the y axis turns logarithmic by itself once the curves on it span two orders
    of magnitude (:func:`~app.plot_tools.spans_decades`), until the user ticks or unticks "log y".
    """

    exported = QtCore.Signal(str, str)       # what, path
    exportFailed = QtCore.Signal(str)

    def __init__(self, parent: QtWidgets.QWidget | None = None, *, auto_log: bool = False,
                 smoothing: float = 0.0):
        super().__init__(parent)
        self.setObjectName("lossPlot")
        self._curves: dict[tuple[str, str, str], _LossCurve] = {}
        self._runs = _Runs()
        self._alpha = 0.0
        self._log_y = False
        self.auto_log = auto_log
        self._log_chosen = False                 # the user ticked or unticked "log y": no more auto
        self._component = TOTAL                  # what a comparison of runs shows
        self.redraw_interval_s = REDRAW_INTERVAL_S
        self._last_redraw = -math.inf            # time.monotonic() of the last hand-over
        self._catch_up = PacedTimer(self, name="loss plot: catch up")
        self._catch_up.timeout.connect(self.redraw)
        self._soon = PacedTimer(self, name="loss plot: redraw")            # the redraw after a hand-over of steps: a turn of its own
        self._soon.setInterval(REDRAW_SOON_MS)
        self._soon.timeout.connect(self.redraw)
        self._to_place: list[_LossCurve] = []    # curves to show, waiting to go on the plot
        self._legend_due: _LossCurve | None = None   # the curve put on last, its legend entry next
        self._place_timer = PacedTimer(self, name="loss plot: place a curve")   # puts them there one at a time, PIECE_INTERVAL_MS apart
        self._place_timer.setInterval(PIECE_INTERVAL_MS)
        self._place_timer.timeout.connect(self._place_next)
        self._select_timer = PacedTimer(self, name="loss plot: show the stage")     # a stage switch (followed, or picked) is shown on a turn of its own
        self._select_timer.timeout.connect(self._show_selection)
        self._spares = _SpareItems(self)
        self._marker_at: tuple[str, int] | None = None
        self._marker_timer = PacedTimer(self, name="loss plot: move the marker")     # the marker follows the snapshot shown on a turn of its own
        self._marker_timer.timeout.connect(self._show_marker)
        self._marker_due = False                 # ... or with the points about to be drawn (one repaint for both)

        self.stage_box = StageSelector()
        self.stage_box.setObjectName("lossStage")
        self.component_label = QtWidgets.QLabel("show")
        self.component_label.setToolTip("Comparing runs: which loss component to draw for each of them")
        self.component_box = QtWidgets.QComboBox()
        self.component_box.setObjectName("lossComponent")
        self.component_box.setToolTip("Comparing runs: which loss component to draw for each of them")
        self.component_box.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.smoothing_box = QtWidgets.QDoubleSpinBox()
        self.smoothing_box.setObjectName("lossSmoothing")
        self.smoothing_box.setRange(0.0, MAX_SMOOTHING)
        self.smoothing_box.setDecimals(3)
        self.smoothing_box.setSingleStep(0.05)
        self.smoothing_box.setMaximumWidth(70)
        self.smoothing_box.setToolTip("Exponential moving average of the drawn curves: "
                                      "s = α·s_prev + (1 − α)·loss. 0 draws the raw values; above 0 the raw "
                                      "values are drawn faintly underneath.")
        self.log_box = QtWidgets.QCheckBox("log y")
        self.log_box.setObjectName("lossLogY")
        self.log_box.setToolTip(f"Logarithmic loss axis (values ≤ {LOG_FLOOR:g} are drawn at {LOG_FLOOR:g}). "
                                "It turns on by itself when the curves span two orders of magnitude "
                                "(distillation terms are often 100× below the cross-entropy), until you "
                                "tick or untick it.")
        self.export = ExportButtons(self, "loss", self.export_png, self.export_csv)
        self.export.exported.connect(self.exported)
        self.export.failed.connect(self.exportFailed)

        controls = QtWidgets.QHBoxLayout()
        controls.setContentsMargins(0, 0, 0, 0)
        controls.setSpacing(4)
        controls.addWidget(self.stage_box)
        controls.addWidget(self.component_label)
        controls.addWidget(self.component_box)
        controls.addSpacing(4)
        smooth_label = QtWidgets.QLabel("smooth")
        smooth_label.setToolTip(self.smoothing_box.toolTip())
        controls.addWidget(smooth_label)
        controls.addWidget(self.smoothing_box)
        controls.addWidget(self.log_box)
        controls.addStretch(1)
        for button in self.export.buttons():
            controls.addWidget(button)
        self._show_component_box(False)

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
        self.marker = pg.InfiniteLine(angle=90, movable=False,
                                      pen=pg.mkPen(MARKER_COLOUR, width=1, style=QtCore.Qt.PenStyle.DashLine))
        self.marker.setToolTip("The step of the attention snapshot shown")
        self.marker.setVisible(False)
        self.plot_item.addItem(self.marker, ignoreBounds=True)
        self.hover = HoverReadout(self.plot_item, self._hover_series, "step", self.log_y, self)

        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 0)
        layout.addLayout(controls)
        layout.addWidget(self.plot_widget, 1)

        self.stage_box.stageChanged.connect(self._stage_changed)
        self.component_box.activated.connect(self._component_picked)
        self.smoothing_box.valueChanged.connect(self.set_smoothing)
        self.log_box.toggled.connect(self._log_toggled)
        if smoothing:
            self.set_smoothing(smoothing)

    # -- public API ---------------------------------------------------------------------------

    def add_steps(self, events: Sequence[StepEvent], run: str = PRIMARY) -> None:
        """Append a batch of step events of ``run``: one point per component (and the total) per event."""
        if not events:
            return
        comparing = self.comparing()
        self._runs.note(run)
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
        new_components = False
        for (stage, component), (xs, ys) in batches.items():
            new_components |= (run, stage, component) not in self._curves
            curve = self._curve(run, stage, component)
            curve.append(np.asarray(xs, np.float64), np.asarray(ys, np.float64), self._alpha, self._log_y)
            curve.planned = planned[stage]
        self.stage_box.note_stages(stages)
        if self.comparing() != comparing:
            self._show_selection()
        elif new_components:
            self._sync_component_box()
        self._consider_log()
        if not self._soon.isActive():
            self._soon.start()                  # the hand-over returns; the points go to pyqtgraph next

    def flush(self) -> None:
        """Hand the steps received so far to pyqtgraph now, not on the next turn (tests, exporters)."""
        if self._soon.isActive():
            self._soon.stop()
            self.redraw()

    def add_run(self, run: str, label: str, events: Sequence[StepEvent]) -> None:
        """Lay the steps of another run over the plot (``run`` is its key, e.g. its folder)."""
        if run == PRIMARY:
            raise ValueError("add_run is for other runs; the primary run's steps go to add_steps")
        self.remove_run(run)
        self._runs.labels[run] = label
        self._runs.note(run)
        self.add_steps(events, run)
        self._show_selection()

    def remove_run(self, run: str) -> None:
        """Take a run off the plot (the primary run's curves go with :meth:`clear_run`)."""
        if run not in self._runs.order and run not in self._runs.labels:
            return
        self.clear_run(run)

    def clear_run(self, run: str = PRIMARY) -> None:
        """Forget every curve of ``run`` (the primary run by default), keep the others."""
        gone = [key for key, curve in self._curves.items() if curve.run == run]
        if not gone and run not in self._runs.order:
            return
        for key in gone:
            curve = self._curves.pop(key)
            self._take_off(curve)
        self._to_place = [c for c in self._to_place if c.run != run]
        self._runs.forget(run)
        if not self._curves:
            self.clear()
            return
        stages = {c.stage for c in self._curves.values()}
        if self.stage_box.stage() not in stages:
            self.stage_box.reset()
            self.stage_box.note_stages(sorted(stages, key=_stage_rank))
        self._show_selection()

    def runs(self) -> list[str]:
        """The keys of the runs on the plot, the primary (``""``) first when it has data."""
        return list(self._runs.order)

    def set_run_label(self, run: str, label: str) -> None:
        """What the legend and the read-out call ``run`` (the primary run is "this run" until named)."""
        if self._runs.labels.get(run) != label:
            self._runs.labels[run] = label
            if self.comparing():
                self._show_selection()

    def run_label(self, run: str) -> str:
        return self._runs.label(run)

    def comparing(self) -> bool:
        """Whether more than one run has curves (then one component of each is drawn)."""
        return len({curve.run for curve in self._curves.values()}) > 1

    def component(self) -> str:
        """The component drawn for each run when comparing runs."""
        return self._component

    def set_component(self, component: str) -> None:
        self._component = component
        self._sync_component_box()
        self._show_selection()

    def redraw(self, force: bool = False) -> None:
        """Hand the shown curves' new points to pyqtgraph: all of them with ``force``, else those due."""
        if not force and not self.isVisible():
            return                              # showEvent catches up
        now = time.monotonic()
        throttled = not force and now - self._last_redraw < self.redraw_interval_s
        waiting = drew = False
        for curve in self._curves.values():
            if curve.on_plot and curve.behind():
                if force or curve.drawn <= 0 or (not throttled and self._redraw_due(curve, now)):
                    curve.push_to_item(self._log_y)
                    drew = True
                else:
                    waiting = True
        if drew:
            self._last_redraw = now
        self._update_box()
        if self._marker_due and (drew or not waiting):
            self._show_marker()
        if waiting and not self._catch_up.isActive():
            wait = self._last_redraw + self.redraw_interval_s - now if throttled else REDRAW_LAG_S
            self._catch_up.start(max(1, math.ceil(1000 * wait)))

    def note_stage(self, stage: str) -> None:
        """A stage has started: list it in the stage box (and show it while following the run)."""
        self.stage_box.note_stages([stage])

    def clear(self) -> None:
        """Remove every curve of every run and forget every stage."""
        self._catch_up.stop()
        self._soon.stop()
        self._place_timer.stop()
        self._select_timer.stop()
        self._legend_due = None
        self._to_place.clear()
        if self._curves:                  # (an empty plot is left alone: no relayout, no repaint)
            for curve in self._curves.values():
                self._take_off(curve)
            self._curves.clear()
            self.legend.clear()
            self.legend.reset_room()
        self._runs = _Runs() if not self._runs.order else self._reset_runs()
        self.stage_box.reset()
        self._anchor.set_box(None)
        self._last_redraw = -math.inf
        self._marker_at = None
        self.marker.setVisible(False)
        self.hover.hide()
        self._show_component_box(False)

    def _reset_runs(self) -> _Runs:
        runs = _Runs()
        runs.labels[PRIMARY] = self._runs.labels.get(PRIMARY, PRIMARY_LABEL)
        return runs

    def curve_names(self) -> list[str]:
        """Every curve's name of the primary run, in order of arrival: ``"total"``, ``"ce"``,
        ``"teacher total"``, ..."""
        return [curve.name for curve in self._curves.values() if curve.run == PRIMARY]

    def curve_data(self, name: str, run: str = PRIMARY) -> tuple[np.ndarray, np.ndarray]:
        """The raw (unsmoothed, unclipped) steps and values of curve ``name`` of ``run`` (copies)."""
        curve = self._named(name, run)
        return curve.x.view().copy(), curve.raw.view().copy()

    def displayed_data(self, name: str, run: str = PRIMARY) -> tuple[np.ndarray, np.ndarray]:
        """What is drawn for curve ``name``: smoothed, and clipped to LOG_FLOOR on a log axis."""
        curve = self._named(name, run)
        return curve.x.view().copy(), curve.shown.view().copy()

    def set_smoothing(self, alpha: float) -> None:
        """Draw an EMA with factor ``alpha`` (0 ≤ alpha ≤ 0.999) instead of the raw values, with the
        raw values faintly under it."""
        alpha = float(alpha)
        if not 0.0 <= alpha <= MAX_SMOOTHING:
            raise ValueError(f"smoothing must be between 0 and {MAX_SMOOTHING}, got {alpha}")
        if alpha == self._alpha:
            return
        raw_before = self._alpha > 0
        self._alpha = alpha
        self._sync_control(self.smoothing_box, alpha)
        if (alpha > 0) != raw_before:
            for curve in self._curves.values():
                if curve.on_plot:
                    self._place_raw(curve)
        self._recompute_all()

    def smoothing(self) -> float:
        return self._alpha

    def set_log_y(self, on: bool) -> None:
        """Use a logarithmic loss axis; values ≤ LOG_FLOOR are drawn at LOG_FLOOR. Called from code
        (or by the user's tick), it decides for good: the axis no longer switches by itself."""
        self._log_chosen = True
        self._apply_log_y(on)

    def _apply_log_y(self, on: bool) -> None:
        on = bool(on)
        if on == self._log_y:
            return
        self._log_y = on
        self._sync_control(self.log_box, on)
        self._recompute_all()
        self.plot_item.setLogMode(y=on)

    def _log_toggled(self, on: bool) -> None:
        self.set_log_y(on)

    def log_y(self) -> bool:
        return self._log_y

    def log_chosen(self) -> bool:
        """Whether the log axis was set by hand (or by code), not by the auto rule."""
        return self._log_chosen

    def stage(self) -> str | None:
        """The stage whose curves are on the plot."""
        return self.stage_box.stage()

    def set_stage(self, stage: str) -> None:
        """Plot ``stage`` and stop following the run."""
        self.stage_box.select(stage)
        self._place_all()

    def is_curve_visible(self, name: str, run: str = PRIMARY) -> bool:
        """Whether curve ``name`` is drawn (it must also belong to the plotted stage to be seen)."""
        self._place_all()
        return self._named(name, run).item.isVisible()

    def plot_items(self) -> dict[str, pg.PlotDataItem]:
        """Each primary curve's PlotDataItem by curve name (for tests and exporters); the shown ones are on the plot,
        with the points handed over so far."""
        self.flush()
        self._place_all()
        return {curve.name: curve.item for curve in self._curves.values() if curve.run == PRIMARY}

    def shown_curves(self) -> list[tuple[str, str, str]]:
        """``(run, stage, component)`` of every curve on the plot now, in legend order."""
        self._place_all()
        return [(c.run, c.stage, c.component) for c in self._curves.values() if c.on_plot]

    def curve_item(self, run: str, stage: str, component: str) -> pg.PlotDataItem:
        self._place_all()
        return self._curves[(run, stage, component)].item

    def raw_item(self, name: str, run: str = PRIMARY) -> pg.PlotDataItem:
        """The faint raw curve under curve ``name`` (empty while smoothing is 0)."""
        self._place_all()
        return self._named(name, run).raw_item

    def legend_labels(self) -> list[str]:
        self._place_all()
        return [label.text for _sample, label in self.legend.items]

    def set_marker(self, stage: str | None, step: int | None) -> None:
        """Mark ``step`` of ``stage`` (the attention snapshot shown) with a vertical line; None clears it."""
        self._marker_at = (str(stage), int(step)) if stage is not None and step is not None else None
        if self._soon.isActive() or self._catch_up.isActive():
            self._marker_due = True         # (live: new points are on their way, the marker moves with them)
        elif not self._marker_timer.isActive():
            self._marker_timer.start()      # (a turn of its own, however often it is moved meanwhile)

    def marker_step(self) -> float | None:
        """The marked step while the line shows on the plot, else None."""
        if self._marker_timer.isActive() or self._marker_due:
            self._show_marker()
        return float(self.marker.value()) if self.marker.isVisible() else None

    def readout_at(self, step: float, value: float) -> str:
        """The hover read-out for a mouse at (``step``, ``value``) in data units; "" when no point is near."""
        self._place_all()
        self.redraw(force=True)
        y = math.log10(value) if self._log_y and value > 0 else value
        return self.hover.show_near(step, y)

    def export_png(self, path) -> Path:
        """The plot as drawn (curves, axes, legend), as a PNG."""
        self._place_all()
        self.redraw(force=True)
        return save_widget_png(self.plot_widget, path)

    def export_csv(self, path) -> Path:
        """Every point of every run and stage: run, stage, component, step, value (raw), smoothed."""
        rows = []
        for curve in self._curves.values():
            raw = curve.raw.view()
            smoothed = ema(raw, self._alpha) if self._alpha > 0 else raw
            label = self._runs.label(curve.run)
            rows += [(label, curve.stage, curve.component, int(x), repr(float(v)), repr(float(s)))
                     for x, v, s in zip(curve.x.view(), raw, smoothed)]
        if not rows:
            raise ValueError("no loss values to export yet")
        return write_csv(path, ("run", "stage", "component", "step", "value", "smoothed"), rows)

    # -- internals ----------------------------------------------------------------------------

    def _named(self, name: str, run: str = PRIMARY) -> _LossCurve:
        for curve in self._curves.values():
            if curve.run == run and curve.name == name:
                return curve
        known = ", ".join(c.name for c in self._curves.values() if c.run == run) or "none yet"
        raise KeyError(f"no loss curve named {name!r}; curves: {known}")

    def _curve(self, run: str, stage: str, component: str) -> _LossCurve:
        key = (run, stage, component)
        curve = self._curves.get(key)
        if curve is None:
            curve = self._curves[key] = _LossCurve(run, curve_name(stage, component), stage, component,
                                                   self._spares.take)
            self._style(curve)
            if self._wanted(curve):
                self._queue_placement(curve)
        return curve

    def _style(self, curve: _LossCurve) -> None:
        """Colour and legend name: by component for one run, by run when comparing runs."""
        if self.comparing():
            colour, name = self._runs.colour(curve.run), self._runs.label(curve.run)
        else:
            colour, name = self._component_colour(curve), curve.component
        curve.style(colour, name)

    def _component_colour(self, curve: _LossCurve) -> str:
        if curve.component == TOTAL:
            return colormaps.TOTAL_COLOUR
        siblings = [c for c in self._curves.values()
                    if c.run == curve.run and c.stage == curve.stage and c.component != TOTAL]
        index = siblings.index(curve) if curve in siblings else len(siblings)
        return colormaps.palette_colour(index)

    def _wanted(self, curve: _LossCurve) -> bool:
        """Whether ``curve`` belongs on the plot now."""
        if curve.stage != self.stage_box.stage():
            return False
        if self.comparing():
            return curve.component == self._component
        return True

    def _queue_placement(self, curve: _LossCurve) -> None:
        if curve not in self._to_place:
            self._to_place.append(curve)
        if not self._place_timer.isActive():
            self._place_timer.start()

    def _place_next(self) -> None:
        """Put the next waiting curve on the plot with its data; on the next turn, its legend entry.

        A step at a time, PIECE_INTERVAL_MS apart: a curve with its legend entry and the plot's
        relayout cost ~7 ms here, and a stage that starts with many components would otherwise hold
        the window up for all of them at once. Curve, entry, curve, entry: the legend keeps their order.
        """
        if self._legend_due is not None:
            curve, self._legend_due = self._legend_due, None
            if curve.on_plot and curve.legend_name:
                self.legend.addItem(curve.item, curve.legend_name)
        else:
            self._make_legend_room()
            while self._to_place:
                curve = self._to_place.pop(0)
                if curve.on_plot or not self._wanted(curve) or curve not in self._curves.values():
                    continue
                self._place_raw(curve)
                curve.item.opts["name"] = None                          # no legend entry yet ...
                self.plot_item.addItem(curve.item, ignoreBounds=True)    # (the range anchor covers it)
                curve.item.opts["name"] = curve.legend_name
                curve.on_plot = True
                if curve.behind():
                    curve.push_to_item(self._log_y)
                self._legend_due = curve                                 # ... it comes next turn
                break
        if self._to_place or self._legend_due is not None:
            self._place_timer.start()

    def _make_legend_room(self) -> None:
        """Widen the legend for the curves waiting to go on (see :meth:`SideLegend.make_room_for`)."""
        self.legend.make_room_for([c.legend_name for c in self._to_place if c.legend_name])

    def _place_raw(self, curve: _LossCurve) -> None:
        """The raw curve goes under a smoothed one, and off when there is no smoothing."""
        want = self._alpha > 0
        if want and not curve.raw_on_plot:
            curve.raw_item.setData([], [])
            self.plot_item.addItem(curve.raw_item, ignoreBounds=True)
            curve.raw_item.setZValue(-1)
            curve.raw_item.setVisible(curve.item.isVisible())
            curve.raw_on_plot = True
            curve.drawn = -1
        elif not want and curve.raw_on_plot:
            curve.raw_item.setData([], [])
            self.plot_item.removeItem(curve.raw_item)
            curve.raw_on_plot = False

    def _take_off(self, curve: _LossCurve) -> None:
        if self._legend_due is curve:
            self._legend_due = None
        if curve.on_plot:
            curve.take_off()
            self.plot_item.removeItem(curve.item)
            curve.on_plot = False
        if curve.raw_on_plot:
            curve.raw_item.setData([], [])
            self.plot_item.removeItem(curve.raw_item)
            curve.raw_on_plot = False

    def _place_all(self) -> None:
        if self._select_timer.isActive():
            self._select_timer.stop()
            self._show_selection()
        while self._to_place or self._legend_due is not None:
            self._place_next()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.redraw(force=True)
        self._spares.restock()

    def _redraw_due(self, curve: _LossCurve, now: float) -> bool:
        count = len(curve.x)
        if curve.drawn <= 0 or count <= THROTTLE_FROM:
            return True
        view = self.plot_item.getViewBox()
        if not view.autoRangeEnabled()[0]:
            return True                     # zoomed in by hand: each new point may be visible
        points_per_column = count / max(view.width(), 200.0)
        return count - curve.drawn >= points_per_column or now - curve.drawn_at >= REDRAW_LAG_S

    def _shown_set(self) -> list[_LossCurve]:
        return [c for c in self._curves.values() if self._wanted(c)]

    def _update_box(self) -> None:
        """Give the range anchor a round box around the shown curves (see RangeAnchor)."""
        curves = [c for c in self._shown_set() if len(c.x) and c.low <= c.high]
        if not curves:              # (a stage just started: not the previous stage's range)
            self._anchor.set_box(EMPTY_BOX if self._curves else None)
            return
        x_lo = min(float(c.x.view()[0]) for c in curves)
        x_hi = max(c.x.last() for c in curves)
        y_lo = min(c.low for c in curves)
        y_hi = max(c.high for c in curves)
        planned = max((c.planned for c in curves), default=0) or None
        self._anchor.set_box(round_box(x_lo, x_hi, y_lo, y_hi, self._log_y, planned))

    def _consider_log(self) -> None:
        """With ``auto_log``, turn the log axis on once the shown curves span two orders of magnitude."""
        if not self.auto_log or self._log_chosen or self._log_y:
            return
        curves = [c for c in self._shown_set() if len(c.x)]
        if curves and spans_decades((c.low for c in curves), (c.high for c in curves)):
            self._apply_log_y(True)

    def _stage_changed(self, _stage: str) -> None:
        # Not in the hand-over that started the stage: taking the last stage's curves off and laying
        # out the new axes is a piece of its own (see app.pacing).
        self._select_timer.start()

    def _component_picked(self, _index: int) -> None:
        component = self.component_box.currentData()
        if component and component != self._component:
            self._component = component
            self._show_selection()

    def _show_component_box(self, shown: bool) -> None:
        self.component_label.setVisible(shown)
        self.component_box.setVisible(shown)

    def _sync_component_box(self) -> None:
        comparing = self.comparing()
        self._show_component_box(comparing)
        if not comparing:
            return
        stage = self.stage_box.stage()
        components = list(dict.fromkeys(
            [TOTAL] + [c.component for c in self._curves.values() if c.stage == stage and c.component != TOTAL]))
        if self._component not in components:
            self._component = TOTAL
        current = [self.component_box.itemData(i) for i in range(self.component_box.count())]
        if current != components:
            self.component_box.blockSignals(True)
            self.component_box.clear()
            for component in components:
                self.component_box.addItem(component, component)
            self.component_box.blockSignals(False)
        self.component_box.setCurrentIndex(max(0, self.component_box.findData(self._component)))

    def _show_selection(self) -> None:
        """Put the wanted curves on the plot (and in the legend) with their colours, take the others off.

        Everything shown is taken off first, so legend entries and colours follow the selection
        (by component for one run, by run when comparing). The curves go on one per event-loop turn
        (see :meth:`_place_next`). A curve leaves the plot empty and gets its data back after it is
        re-added: pyqtgraph's clip-to-view fails on an item that holds data while it is being added.
        """
        self._select_timer.stop()
        self._sync_component_box()
        self._to_place = []
        for curve in self._curves.values():
            self._take_off(curve)
            self._style(curve)
        for curve in self._curves.values():
            if self._wanted(curve):
                self._queue_placement(curve)
        self._make_legend_room()                # with the box: one relayout
        self._update_box()
        self._show_marker()
        self.hover.hide()
        self.plot_item.enableAutoRange()
        self._consider_log()

    def _show_marker(self) -> None:
        self._marker_timer.stop()
        self._marker_due = False
        at = self._marker_at
        if at is None or at[0] != self.stage_box.stage():
            self.marker.setVisible(False)
            return
        self.marker.setValue(at[1])
        self.marker.setVisible(True)

    def _hover_series(self) -> list[Series]:
        series = []
        for curve in self._curves.values():
            if curve.on_plot and curve.item.isVisible() and len(curve.x):
                series.append(Series(curve.component, self._runs.label(curve.run), curve.x.view(),
                                     curve.shown.view(), curve.raw.view() if self._alpha > 0 else None))
        return series

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


TOTAL_PEN = colormaps.TOTAL_COLOUR
_STAGE_ORDER = [stage.value for stage in Stage]


def _stage_rank(stage: str) -> int:
    return _STAGE_ORDER.index(stage) if stage in _STAGE_ORDER else len(_STAGE_ORDER)


# --------------------------------------------------------------------------------------------------
# accuracy plot


class _AccuracyRun:
    """One run's accuracies: ``{series name: {epoch: accuracy}}``, its stages' planned epochs, its teacher."""

    def __init__(self) -> None:
        self.values: dict[str, dict[int, float]] = {}
        self.stage_epochs: dict[str, int] = {}
        self.teacher_acc: float | None = None
        self.items: dict[str, pg.PlotDataItem] = {}     # "train", "test" (other runs' items)

    def add(self, events: Sequence[EpochEvent]) -> None:
        for event in events:
            self.values.setdefault(curve_name(event.stage, "train"), {})[event.epoch] = float(event.train_acc)
            self.values.setdefault(curve_name(event.stage, "test"), {})[event.epoch] = float(event.test_acc)
            self.stage_epochs[event.stage] = max(int(event.epochs), self.stage_epochs.get(event.stage, 0))
            if event.teacher_acc is not None:
                self.teacher_acc = float(event.teacher_acc)

    def series(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        values = self.values.get(name, {})
        epochs = np.array(sorted(values), dtype=np.float64)
        return epochs, np.array([values[int(e)] for e in epochs], dtype=np.float64)

    def has_stage(self, stage: str) -> bool:
        return curve_name(stage, "train") in self.values or curve_name(stage, "test") in self.values


class AccuracyPlot(QtWidgets.QWidget):
    """Top-1 train and test accuracy per epoch, with the teacher's test accuracy as a dashed line.

    Series names: ``"train"``, ``"test"`` (student stage), ``"<stage> train"``/``"<stage> test"``
    for other stages, and ``"teacher"`` for the reference line. An epoch reported twice keeps its
    latest value. New epochs are drawn on the next event-loop turn, so that their repaint is not
    added to the loss plot's (epochs end with a burst of events); :meth:`plot_items` draws at once.

    Other runs can be laid over the primary one (:meth:`add_run`): then each run has one colour, its
    test accuracy a solid line named by the run in the legend and its train accuracy a dotted line
    of the same colour; the teacher's line is the primary run's (or the first run's that has one).
    """

    exported = QtCore.Signal(str, str)
    exportFailed = QtCore.Signal(str)

    def __init__(self, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("accuracyPlot")
        self._data: dict[str, _AccuracyRun] = {PRIMARY: _AccuracyRun()}
        self._runs = _Runs()
        self._legend_key: tuple | None = None
        # the legend's sample for "train (dotted)" when comparing runs (never on the plot itself)
        self._dotted_sample = pg.PlotDataItem(pen=pg.mkPen(colormaps.MUTED, width=1, style=QtCore.Qt.PenStyle.DotLine))

        self.stage_box = StageSelector()
        self.stage_box.setObjectName("accuracyStage")
        self.export = ExportButtons(self, "accuracy", self.export_png, self.export_csv)
        self.export.exported.connect(self.exported)
        self.export.failed.connect(self.exportFailed)
        controls = QtWidgets.QHBoxLayout()
        controls.setContentsMargins(0, 0, 0, 0)
        controls.setSpacing(4)
        controls.addWidget(self.stage_box)
        controls.addStretch(1)
        for button in self.export.buttons():
            controls.addWidget(button)

        self.plot_widget = _new_plot_widget()
        self.plot_item: pg.PlotItem = self.plot_widget.getPlotItem()
        colormaps.style_plot_item(self.plot_item, x_label="epoch", y_label="top-1 accuracy (%)",
                                  title="Accuracy")
        self.legend = colormaps.make_side_legend(self.plot_item, colormaps.ACCURACY_LEGEND_MIN_PX)  # covers no point
        self.legend.set_wanted(False)                                  # until there is data

        train_colour, test_colour = colormaps.palette_colour(0), colormaps.palette_colour(1)
        # The view fits a round box (the range anchor) around the points, not the points themselves:
        # the axes are laid out again only when the box changes, not at every epoch.
        self._anchor = RangeAnchor()
        self.plot_item.getViewBox().addItem(self._anchor)
        self._train_item = self._add_item(pg.PlotDataItem(
            pen=pg.mkPen(train_colour, width=1), symbol="o", symbolSize=6,
            symbolBrush=train_colour, symbolPen=None))
        self._test_item = self._add_item(pg.PlotDataItem(
            pen=pg.mkPen(test_colour, width=1), symbol="s", symbolSize=6,
            symbolBrush=test_colour, symbolPen=None))
        self._teacher_item = self._add_item(pg.PlotDataItem(
            pen=pg.mkPen(colormaps.MUTED, width=1, style=QtCore.Qt.PenStyle.DashLine)))
        self._data[PRIMARY].items = {"train": self._train_item, "test": self._test_item}
        self._teacher_label = pg.TextItem(color=colormaps.MUTED, anchor=(1.0, 0.0))   # under the line's end
        self._teacher_label.setVisible(False)
        self.plot_item.addItem(self._teacher_label, ignoreBounds=True)
        self.hover = HoverReadout(self.plot_item, self._hover_series, "epoch", parent=self)

        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 0)
        layout.addLayout(controls)
        layout.addWidget(self.plot_widget, 1)
        self._redraw_timer = PacedTimer(self, name="accuracy plot: redraw")
        self._redraw_timer.setInterval(ACCURACY_DELAY_MS)
        self._redraw_timer.timeout.connect(self._redraw)
        self._legend_timer = PacedTimer(self, name="accuracy plot: legend")       # the legend and the teacher's label: a turn after the points
        self._legend_timer.timeout.connect(self._show_legend)
        self._legend_pending: tuple | None = None
        self.stage_box.stageChanged.connect(lambda _stage: self._redraw_timer.start())

    # -- public API ---------------------------------------------------------------------------

    def add_epochs(self, events: Sequence[EpochEvent], run: str = PRIMARY) -> None:
        """Record a batch of epoch events of ``run`` and redraw once."""
        if not events:
            return
        self._data.setdefault(run, _AccuracyRun()).add(events)
        self._runs.note(run)
        self.stage_box.note_stages(event.stage for event in events)
        self._redraw_timer.start()

    def add_run(self, run: str, label: str, events: Sequence[EpochEvent]) -> None:
        """Lay another run's accuracies over the plot."""
        if run == PRIMARY:
            raise ValueError("add_run is for other runs; the primary run's epochs go to add_epochs")
        self.remove_run(run)
        self._runs.labels[run] = label
        self._runs.note(run)
        self.add_epochs(events, run)
        self._redraw_timer.start()

    def remove_run(self, run: str) -> None:
        if run == PRIMARY:
            self.clear_run()
            return
        data = self._data.pop(run, None)
        if data is not None:
            for item in data.items.values():
                self.plot_item.removeItem(item)
        self._runs.forget(run)
        self._redraw_timer.start()

    def clear_run(self, run: str = PRIMARY) -> None:
        """Forget ``run``'s epochs (the primary run's by default), keep the others."""
        if run != PRIMARY:
            self.remove_run(run)
            return
        primary = self._data[PRIMARY]
        had = bool(primary.values) or primary.teacher_acc is not None
        items = primary.items
        self._data[PRIMARY] = _AccuracyRun()
        self._data[PRIMARY].items = items
        self._runs.forget(PRIMARY)
        if len(self._data) == 1:
            self.stage_box.reset()
        if had:
            self._redraw()

    def set_run_label(self, run: str, label: str) -> None:
        if self._runs.labels.get(run) != label:
            self._runs.labels[run] = label
            self._redraw_timer.start()

    def runs(self) -> list[str]:
        return list(self._runs.order)

    def comparing(self) -> bool:
        return sum(1 for data in self._data.values() if data.values) > 1

    def note_stage(self, stage: str) -> None:
        """A stage has started: list it in the stage box before its first epoch ends."""
        self.stage_box.note_stages([stage])

    def clear(self) -> None:
        """Forget every run's epochs."""
        had_data = any(data.values or data.teacher_acc is not None for data in self._data.values())
        for run in [run for run in self._data if run != PRIMARY]:
            for item in self._data.pop(run).items.values():
                self.plot_item.removeItem(item)
        items = self._data[PRIMARY].items
        self._data[PRIMARY] = _AccuracyRun()
        self._data[PRIMARY].items = items
        primary_label = self._runs.labels.get(PRIMARY, PRIMARY_LABEL)
        self._runs = _Runs()
        self._runs.labels[PRIMARY] = primary_label
        self.stage_box.reset()
        if had_data:                      # (an empty plot is left alone: no repaint)
            self._redraw()
            self._show_legend()           # at once: an emptied plot shows no legend

    def series_names(self) -> list[str]:
        primary = self._data[PRIMARY]
        names = list(primary.values)
        return names + ["teacher"] if primary.teacher_acc is not None else names

    def series(self, name: str, run: str = PRIMARY) -> tuple[np.ndarray, np.ndarray]:
        """Epochs and accuracies (%) of ``"train"``, ``"test"``, ``"<stage> train"``... or ``"teacher"``.

        The teacher's series is its reference line: the planned epochs' first and last, at the
        teacher's accuracy. Unknown names raise KeyError; a known name with no data yet is empty.
        """
        data = self._data.get(run)
        if data is None:
            raise KeyError(f"no run {run!r} on the accuracy plot; runs: {', '.join(self._data)}")
        if name == "teacher":
            return self._teacher_line(data)
        if name not in data.values and name not in ("train", "test"):
            names = list(data.values) + (["teacher"] if data.teacher_acc is not None else [])
            known = ", ".join(names) or "none yet"
            raise KeyError(f"no accuracy series named {name!r}; series: {known}")
        return data.series(name)

    def stage(self) -> str | None:
        return self.stage_box.stage()

    def set_stage(self, stage: str) -> None:
        self.stage_box.select(stage)

    def plot_items(self) -> dict[str, pg.PlotDataItem]:
        """The primary run's train, test and teacher items, with every epoch received drawn."""
        self._draw_pending()
        return {"train": self._train_item, "test": self._test_item, "teacher": self._teacher_item}

    def run_items(self, run: str) -> dict[str, pg.PlotDataItem]:
        self._draw_pending()
        return dict(self._data[run].items)

    def legend_labels(self) -> list[str]:
        self._draw_pending()
        return [label.text for _sample, label in self.legend.items]

    def readout_at(self, epoch: float, accuracy: float) -> str:
        self._draw_pending()
        return self.hover.show_near(epoch, accuracy)

    def export_png(self, path) -> Path:
        self._draw_pending()
        return save_widget_png(self.plot_widget, path)

    def export_csv(self, path) -> Path:
        """Every accuracy of every run: run, stage, series, epoch, accuracy (%)."""
        rows = []
        for run, data in self._data.items():
            label = self._runs.label(run)
            for name, values in data.values.items():
                stage, _, series = name.rpartition(" ")
                for epoch in sorted(values):
                    rows.append((label, stage or MAIN_STAGE, series, epoch, repr(values[epoch])))
            if data.teacher_acc is not None:
                rows.append((label, MAIN_STAGE, "teacher", "", repr(data.teacher_acc)))
        if not rows:
            raise ValueError("no accuracy to export yet")
        return write_csv(path, ("run", "stage", "series", "epoch", "accuracy"), rows)

    # -- drawing ------------------------------------------------------------------------------

    def _teacher_line(self, data: _AccuracyRun) -> tuple[np.ndarray, np.ndarray]:
        if data.teacher_acc is None:
            return np.empty(0), np.empty(0)
        stage = self.stage_box.stage() or MAIN_STAGE
        last = max(max((d.stage_epochs.get(stage, 1) for d in self._data.values()), default=1), 2)
        return np.array([1.0, float(last)]), np.full(2, data.teacher_acc)

    def _teacher_source(self) -> _AccuracyRun | None:
        for run in [PRIMARY] + self._runs.order:
            data = self._data.get(run)
            if data is not None and data.teacher_acc is not None:
                return data
        return None

    def _item_for(self, run: str, role: str) -> pg.PlotDataItem:
        data = self._data[run]
        item = data.items.get(role)
        if item is None:
            item = self._add_item(pg.PlotDataItem())
            data.items[role] = item
        return item

    def _add_item(self, item: pg.PlotDataItem) -> pg.PlotDataItem:
        self.plot_item.addItem(item, ignoreBounds=True)       # the range anchor covers it
        return item

    def _update_box(self, xs: list[np.ndarray], ys: list[np.ndarray]) -> None:
        """The anchor's box: epochs 0.5 beyond the first and the last (planned); accuracies from the
        ten below the lowest point to 100 % (accuracies rise: the box changes when a point falls
        below its bottom, not at every new ten)."""
        x = np.concatenate(xs) if xs else np.empty(0)
        y = np.concatenate(ys) if ys else np.empty(0)
        y = y[np.isfinite(y)]
        if x.size == 0 or y.size == 0:
            self._anchor.set_box(None)
            return
        stage = self.stage_box.stage() or MAIN_STAGE
        planned = max((d.stage_epochs.get(stage, 0) for d in self._data.values()), default=0)
        x_hi = max(float(x.max()), float(planned)) + 0.5
        y_lo = min(90.0, max(0.0, math.floor(float(y.min()) / 10.0) * 10.0))
        self._anchor.set_box((0.5, x_hi, y_lo, 100.0))

    def _redraw(self) -> None:
        self._redraw_timer.stop()
        stage = self.stage_box.stage() or MAIN_STAGE
        comparing = self.comparing()
        teacher = self._teacher_source()
        shown = any(data.has_stage(stage) for data in self._data.values()) or teacher is not None
        legend: list[tuple[pg.PlotDataItem, str]] = []
        points = [np.empty(0)]
        epochs = [np.empty(0)]
        for run, data in self._data.items():
            train = data.series(curve_name(stage, "train"))
            test = data.series(curve_name(stage, "test"))
            if run != PRIMARY and not data.values:
                continue
            train_item, test_item = self._item_for(run, "train"), self._item_for(run, "test")
            if comparing:
                colour = self._runs.colour(run)
                self._style_item(train_item, colour, 1, True, None)
                self._style_item(test_item, colour, 2, False, "o")
                if data.has_stage(stage):
                    legend.append((test_item, self._runs.label(run)))
            else:
                for item, role, symbol in ((train_item, "train", "o"), (test_item, "test", "s")):
                    self._style_item(item, colormaps.palette_colour(0 if role == "train" else 1), 1, False, symbol)
                    if data.has_stage(stage) and run == PRIMARY:
                        legend.append((item, role))
            train_item.setData(*train)
            test_item.setData(*test)
            points += [train[1], test[1]]
            epochs += [train[0], test[0]]
        x, y = self._teacher_line(teacher) if teacher is not None else (np.empty(0), np.empty(0))
        self._teacher_item.setData(x, y)
        self._update_box(epochs + [x], points + [y])
        if teacher is not None:
            legend.append((self._teacher_item, "teacher" if not comparing else f"teacher {teacher.teacher_acc:.1f} %"))
        if comparing and legend:
            legend.append((self._dotted_sample, "train (dotted)"))
        # The legend and the label lay the plot out again when they change: a piece of their own.
        self._legend_pending = (legend, shown, teacher, comparing, x)
        self._legend_timer.start()

    def _show_legend(self) -> None:
        """The legend and the teacher's label for the points drawn last (:meth:`_redraw`)."""
        self._legend_timer.stop()
        if self._legend_pending is None:
            return
        legend, shown, teacher, comparing, x = self._legend_pending
        self._legend_pending = None
        self._set_legend(legend)
        self.legend.set_wanted(shown)                 # no legend over an empty plot
        if teacher is None or comparing:          # comparing runs, the legend gives the teacher's accuracy
            self._teacher_label.setVisible(False)
        else:
            # under the line's end, or above it when the line is in the lower half of the plot's box
            # (under it, the label would leave the plot)
            box = self._anchor.box         # (set by _redraw: the teacher's line is in it)
            low_line = box is not None and teacher.teacher_acc < (box[2] + box[3]) / 2
            self._teacher_label.setAnchor((1.0, 1.0) if low_line else (1.0, 0.0))
            text = f"teacher {teacher.teacher_acc:.1f} %"
            if self._teacher_label.toPlainText() != text:        # (setting it lays the text out again)
                self._teacher_label.setText(text)
            self._teacher_label.setPos(float(x[-1]), teacher.teacher_acc)
            self._teacher_label.setVisible(True)

    def _draw_pending(self) -> None:
        """Draw now what is waiting for its turn (accessors, exports and tests see it drawn)."""
        if self._redraw_timer.isActive():
            self._redraw()
        if self._legend_timer.isActive():
            self._show_legend()

    def _style_item(self, item: pg.PlotDataItem, colour: str, width: int, dotted: bool, symbol: str | None) -> None:
        """Pen and symbol of an accuracy curve, set only when they change: each setting makes pyqtgraph
        draw the curve's symbols anew (an epoch's redraw otherwise repainted them all every time)."""
        style = (colour, width, dotted, symbol)
        if getattr(item, "_featdistill_style", None) == style:
            return
        item._featdistill_style = style
        pen_style = QtCore.Qt.PenStyle.DotLine if dotted else QtCore.Qt.PenStyle.SolidLine
        item.setPen(pg.mkPen(colour, width=width, style=pen_style))
        item.setSymbol(symbol)
        if symbol is not None:
            item.setSymbolBrush(colour)
            item.setSymbolPen(None)
            item.setSymbolSize(6)

    def _set_legend(self, entries: list[tuple[pg.PlotDataItem, str]]) -> None:
        key = tuple((id(item), label) for item, label in entries)
        if key == self._legend_key:
            return
        self._legend_key = key
        self.legend.clear()
        for item, label in entries:
            self.legend.addItem(item, label)

    def _hover_series(self) -> list[Series]:
        stage = self.stage_box.stage() or MAIN_STAGE
        series = []
        for run, data in self._data.items():
            label = self._runs.label(run)
            for role in ("test", "train"):
                x, y = data.series(curve_name(stage, role))
                if x.size:
                    series.append(Series(role, label, x, y))
        teacher = self._teacher_source()
        if teacher is not None:
            x, y = self._teacher_line(teacher)
            series.append(Series("teacher", "", x, y))
        return series
