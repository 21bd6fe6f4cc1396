"""Running someone else's code (a user's model factory, its first forward pass) with a time limit.

:func:`call_with_time_limit` runs a function on a helper thread and waits at most
:func:`model_time_limit` seconds (120 by default; ``FEATDISTILL_MODEL_TIME_LIMIT`` changes it). A
function that does not return in time is reported as hanging (:class:`TimeLimitExceeded`); one that
calls ``sys.exit()`` is reported as such (:class:`ExitCalled`) instead of ending the program. A thread
that never returns cannot be killed: it is left running as a daemon (it ends with the process), and
:func:`abandoned_threads` says whether there is one, so a command can exit without waiting for it.
"""

from __future__ import annotations

import os
import threading

DEFAULT_LIMIT_S = 120.0

__all__ = ["DEFAULT_LIMIT_S", "ExitCalled", "TimeLimitExceeded", "abandoned_threads", "call_with_time_limit",
           "model_time_limit"]

_abandoned: list[threading.Thread] = []


class TimeLimitExceeded(ValueError):
    """The function was still running when the time limit ran out."""


class ExitCalled(ValueError):
    """The function called ``sys.exit()`` (or raised ``SystemExit``)."""

    def __init__(self, message: str, code):
        super().__init__(message)
        self.code = code


def model_time_limit() -> float:
    try:
        value = float(os.environ.get("FEATDISTILL_MODEL_TIME_LIMIT", DEFAULT_LIMIT_S))
    except ValueError:
        return DEFAULT_LIMIT_S
    return value if value > 0 else DEFAULT_LIMIT_S


def call_with_time_limit(function, what: str, seconds: float | None = None):
    """``function()``'s result, or the exception it raised (``SystemExit`` as :class:`ExitCalled`);
    :class:`TimeLimitExceeded` when it takes longer than ``seconds`` (default :func:`model_time_limit`).

    ``what`` names the code in messages: ``"calling mypkg.nets:tiny(num_classes=10)"``."""
    limit = model_time_limit() if seconds is None else seconds
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["value"] = function()
        except SystemExit as exc:
            outcome["exit"] = exc.code
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="featdistill-user-code", daemon=True)
    thread.start()
    try:
        thread.join(limit)
    except BaseException:
        # Ctrl-C while waiting: let the code finish its step (a second one leaves it behind), so the
        # process never ends under a thread that is inside torch's C++ code.
        try:
            thread.join(min(limit, 30.0))
        finally:
            if thread.is_alive():
                _abandoned.append(thread)
        raise
    if thread.is_alive():
        _abandoned.append(thread)
        raise TimeLimitExceeded(f"{what} did not finish within {limit:g} s (it hangs, or is far too slow; "
                                "FEATDISTILL_MODEL_TIME_LIMIT sets the limit in seconds)")
    if "exit" in outcome:
        raise ExitCalled(f"{what} called sys.exit({outcome['exit']!r}); a model's code must not end the program",
                         outcome["exit"])
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def abandoned_threads() -> list[threading.Thread]:
    """Helper threads that ran out of time and are still running."""
    return [t for t in _abandoned if t.is_alive()]
