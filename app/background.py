"""One piece of core work on a short-lived background thread, so the window never freezes.

:class:`BackgroundTask` runs ``work(progress, cancel)`` on a Python thread. The thread never touches
Qt: it leaves progress and its result in a queue that a GUI-thread timer drains (the pattern of
:class:`~app.layer_picker.LayerLoader`), so ``progressed(done, total)``, ``succeeded(result)`` and
``failed(message)`` are emitted on the GUI thread. While the thread runs, garbage is collected on the
GUI thread only (:class:`~app.worker.GuiGarbage`).

The work's own errors reach ``failed`` as one line (a ``ConfigError`` as its problems in plain words);
:meth:`cancel` asks the work to stop at its next ``cancel()`` check (the core's analyses check between
two batches), and a cancelled task emits ``cancelled``. Never a traceback for the user.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable

from PySide6 import QtCore

from featdistill_core import AnalysisCancelled, ConfigError

from app.worker import GuiGarbage

POLL_MS = 40


def one_line(exc: BaseException) -> str:
    """An exception as the one line a user reads."""
    if isinstance(exc, ConfigError):
        from app.config_form import problems_summary     # here: config_form imports the panels that import this
        return problems_summary(exc.problems, 3)
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class BackgroundTask(QtCore.QObject):
    """Runs one job at a time; :meth:`start` refuses (False) while one runs."""

    progressed = QtCore.Signal(int, int)
    succeeded = QtCore.Signal(object)
    failed = QtCore.Signal(str)
    cancelled = QtCore.Signal()
    ended = QtCore.Signal()           # after any of the three above

    def __init__(self, name: str, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self.name = name
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._drain)

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self, work: Callable) -> bool:
        """Run ``work(progress, cancel)`` in the background; False when a job is already running."""
        if self._thread is not None:
            return False
        self._cancel = threading.Event()
        cancel_event = self._cancel
        results = self._queue

        def progress(done: int, total: int) -> None:
            results.put(("progress", (int(done), int(total))))

        def run() -> None:
            try:
                results.put(("ok", work(progress, cancel_event.is_set)))
            except AnalysisCancelled:
                results.put(("cancelled", None))
            except Exception as exc:         # noqa: BLE001 - every failure becomes one line for the user
                if cancel_event.is_set():
                    results.put(("cancelled", None))
                else:
                    results.put(("error", one_line(exc)))

        thread = threading.Thread(target=run, name=f"featdistill-{self.name}", daemon=True)
        self._thread = thread
        GuiGarbage.instance().hold(thread)
        thread.start()
        self._timer.start()
        return True

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self, timeout: float = 60.0) -> bool:
        """Block until the job has ended and its signals are emitted (closing, tests); True when it has."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                return False
        self._drain()
        return True

    def _drain(self) -> None:
        thread = self._thread
        finished = thread is None or not thread.is_alive()     # before draining: no result is missed
        last_progress = None
        outcome = None
        while True:
            try:
                kind, value = self._queue.get_nowait()
            except queue.Empty:
                break
            if kind == "progress":
                last_progress = value
            else:
                outcome = (kind, value)
        if last_progress is not None:
            self.progressed.emit(*last_progress)
        if outcome is None and not finished:
            return
        if thread is not None:
            thread.join(5.0)               # it has put its outcome: it is ending
            self._thread = None
            self._timer.stop()
        if outcome is None:
            if thread is None:
                return
            outcome = ("error", f"the {self.name} job ended without a result")
        kind, value = outcome
        if kind == "ok":
            self.succeeded.emit(value)
        elif kind == "cancelled":
            self.cancelled.emit()
        else:
            self.failed.emit(value)
        self.ended.emit()
