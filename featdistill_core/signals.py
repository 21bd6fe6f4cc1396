"""Ctrl-C and SIGTERM: the first asks the run to stop at its next step, a second one exits at once.

:class:`SignalStop` is a context manager for the main thread of a command that trains::

    with SignalStop() as signals:
        signals.arm(trainer.request_stop)   # from here a signal stops the run at its next step
        finished = trainer.run()
    if signals.received: ...                # the run was stopped by a signal: 130 / 143

While armed, the first SIGINT or SIGTERM calls the stop callback and prints one line; the trainer then
writes its checkpoint, its models and a final "stopped" event. A second signal (or any signal while
not armed) raises :class:`Interrupted`, a ``KeyboardInterrupt``, at once: writes under way are
abandoned atomically (the previous version of each file stays valid) and nothing more is written.

Outside the main thread (the window's training thread, tests) it installs nothing.
"""

from __future__ import annotations

import os
import signal
import threading

__all__ = ["EXIT_CODES", "Interrupted", "SignalStop", "signal_name"]

HANDLED = (signal.SIGINT, signal.SIGTERM)
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class Interrupted(KeyboardInterrupt):
    """A signal that ends the command at once."""

    def __init__(self, signum: int):
        super().__init__(signal_name(signum))
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signum, 128 + int(self.signum))


class SignalStop:
    def __init__(self, message: str = "stopping after this step ({again} again to quit at once)"):
        self.message = message
        self.received: int | None = None
        self.interrupted = False        # a signal raised Interrupted (quit at once)
        self._stop = None
        self._previous: dict = {}

    def __enter__(self) -> "SignalStop":
        if threading.current_thread() is threading.main_thread():
            for signum in HANDLED:
                try:
                    self._previous[signum] = signal.signal(signum, self._handle)
                except (ValueError, OSError):   # pragma: no cover - a platform without it
                    pass
        return self

    def __exit__(self, *exc) -> None:
        self.disarm()
        for signum, handler in self._previous.items():
            try:
                signal.signal(signum, handler)
            except (ValueError, OSError, TypeError):   # pragma: no cover
                pass
        self._previous.clear()

    def arm(self, stop_callback) -> None:
        """From now on the first signal calls ``stop_callback()`` instead of interrupting."""
        self._stop = stop_callback

    def disarm(self) -> None:
        self._stop = None

    @property
    def exit_code(self) -> int | None:
        return None if self.received is None else EXIT_CODES.get(self.received, 128 + int(self.received))

    def _handle(self, signum, frame) -> None:
        if self._stop is not None and self.received is None:
            self.received = signum
            try:
                again = "press Ctrl-C" if signum == signal.SIGINT else "send it"
                os.write(2, f"\nfeatdistill: {signal_name(signum)}: {self.message.format(again=again)}\n".encode())
            except OSError:
                pass
            self._stop()
            return
        self.interrupted = True
        raise Interrupted(signum)
