"""The window's deferred drawing, one piece at a time, with a turn for the user in between.

While a run trains, the window does its drawing in pieces, each on a timer of its own: the worker's
hand-over of events (twice a second), the loss plot's redraw a few ms after it, a stage's curves
going on the plot one by one, the accuracy plot's redraw, the attention maps' drawing and their
panels' building. Each piece takes a few ms and the repaint it causes up to ~15 ms more (offscreen,
all on the CPU) — but timers fire in the order they fall due, so two pieces due at the same moment
ran back to back, with their repaints, and a click or a key waited for all of them (the stall
benchmark's longest gaps were such pairs).

A :class:`PacedTimer` is a ``QTimer`` whose ``timeout`` waits its turn: when it falls due less than
:data:`PACE_GAP_MS` after another paced piece ended, it fires that much later instead. In the gap the
event loop repaints what the last piece changed and handles input and other timers (the stall
benchmark's heartbeat among them), so what the user waits for at most is one piece and its
repaint. Only deferred drawing is paced; what the user does (a click, a slider) is handled at once.
All of this runs on the GUI thread.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from PySide6 import QtCore, QtWidgets

PACE_GAP_MS = 20            # at least this long between the end of one paced piece and the start of the next

_last_end = -math.inf       # time.perf_counter() at the end of the last paced piece (GUI thread only)


def wait_ms() -> int:
    """How long a piece falling due now waits for its turn (0: it may run now)."""
    left = _last_end + PACE_GAP_MS / 1000.0 - time.perf_counter()
    return math.ceil(left * 1000.0) if left > 0 else 0


def piece_ended() -> None:
    """Note that a paced piece ended now."""
    global _last_end
    _last_end = time.perf_counter()


class PacedTimer(QtCore.QObject):
    """A ``QTimer`` (single-shot, or repeating with :meth:`setSingleShot` ``(False)``) whose
    ``timeout`` is emitted only when no other paced piece ended less than :data:`PACE_GAP_MS` ago;
    else it is emitted once that gap has passed. The methods are QTimer's that the window uses."""

    timeout = QtCore.Signal()

    def __init__(self, parent: QtCore.QObject | None = None, interval_ms: int = 0, single_shot: bool = True,
                 name: str = ""):
        super().__init__(parent)
        self.setObjectName(name)            # what the piece does (the stall benchmark's profile names it so)
        self._timer = QtCore.QTimer(self)
        self._timer.setSingleShot(single_shot)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._due)
        self._turn = QtCore.QTimer(self)          # fires when a piece that fell due too early gets its turn
        self._turn.setSingleShot(True)
        self._turn.timeout.connect(self._due)

    def _due(self) -> None:
        wait = wait_ms()
        if wait > 0:
            self._turn.start(wait)
            return
        try:
            self.timeout.emit()
        finally:
            piece_ended()

    # ---- QTimer's interface ------------------------------------------------------------------------
    def start(self, interval_ms: int | None = None) -> None:
        self._turn.stop()
        if interval_ms is None:
            self._timer.start()
        else:
            self._timer.start(interval_ms)

    def stop(self) -> None:
        self._timer.stop()
        self._turn.stop()

    def isActive(self) -> bool:
        return self._timer.isActive() or self._turn.isActive()

    def remainingTime(self) -> int:
        """Milliseconds until it falls due (waiting for its turn: until that), -1 when inactive."""
        if self._turn.isActive():
            return self._turn.remainingTime()
        return self._timer.remainingTime()

    def setInterval(self, interval_ms: int) -> None:
        self._timer.setInterval(interval_ms)

    def interval(self) -> int:
        return self._timer.interval()

    def setSingleShot(self, single_shot: bool) -> None:
        self._timer.setSingleShot(single_shot)

    def isSingleShot(self) -> bool:
        return self._timer.isSingleShot()


def repaint_later(widget: QtWidgets.QWidget, change: Callable, *args) -> None:
    """``change(*args)`` with ``widget``'s repaint left to the window's next paint (an event of its
    own) instead of done at once. ``QProgressBar.setValue`` repaints the bar synchronously, inside
    the handler that called it: the worker's hand-over of events, with the window's backing store
    flushed (0.7 ms idle on the build machine, several times that while a run trains)."""
    widget.setUpdatesEnabled(False)
    try:
        change(*args)
    finally:
        widget.setUpdatesEnabled(True)      # posts the update
