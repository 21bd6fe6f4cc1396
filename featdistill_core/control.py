"""Stop and pause, requested from any thread, honoured by the trainer at its yield points (each step)."""

from __future__ import annotations

import threading


class StopRequested(Exception):
    """Raised at a yield point after :meth:`RunControl.request_stop`."""


class RunControl:
    def __init__(self) -> None:
        self._stop = threading.Event()
        self._running = threading.Event()   # cleared while paused
        self._running.set()

    def request_stop(self) -> None:
        self._stop.set()
        self._running.set()                 # a paused run must wake up to stop

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def stop_requested(self) -> bool:
        """Whether a stop was asked for (for work that checks rather than raises, e.g. a final analysis)."""
        return self._stop.is_set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def checkpoint(self) -> None:
        """Block while paused; raise :class:`StopRequested` if a stop was asked for."""
        self._running.wait()
        if self._stop.is_set():
            raise StopRequested()
