"""What the command line prints: one-line messages on stderr, and the progress bar."""

from __future__ import annotations

import sys
import time

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


def say(text: str) -> None:
    _line(text)


def error(text: str) -> None:
    _line(f"featdistill: error: {text}")


def _line(text: str) -> None:
    """One write per line, so that the lines of several processes (torchrun ranks) never interleave."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


class ProgressBar:
    """A trainer subscriber drawing ``[stage] ████░░ 42% epoch 2/8 loss 0.93 1830 img/s ETA 0:41``.

    The ETA is the stage's, from :class:`~featdistill_core.progress.ProgressEstimator`.
    """

    WIDTH = 24

    def __init__(self, stages=(), batch_size: int = 1, stream=None, min_interval: float = 0.1):
        from featdistill_core.progress import ProgressEstimator

        self.stream = stream or sys.stderr
        self.min_interval = min_interval
        self._interactive = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._estimator = ProgressEstimator(stages, batch_size)
        self._last_draw = 0.0
        self._line = ""
        self._eta = ""

    @classmethod
    def for_trainer(cls, trainer, **kwargs) -> "ProgressBar":
        return cls(trainer.stages, trainer.config.batch_size, **kwargs)

    def __call__(self, event) -> None:
        from featdistill_core import events

        self._estimator.update(event)
        if isinstance(event, events.StepEvent):
            now = time.perf_counter()
            if now - self._last_draw >= self.min_interval or event.step == event.total_steps:
                self._last_draw = now
                self._draw(event)
        elif isinstance(event, events.EpochEvent):
            teacher = f", teacher {event.teacher_acc:.1f}%" if event.teacher_acc is not None else ""
            self._finish_line(f"[{event.stage}] epoch {event.epoch}/{event.epochs}: "
                              f"train {event.train_acc:.1f}%, test {event.test_acc:.1f}%{teacher}"
                              + (f"  (stage ETA {self._eta})" if event.epoch < event.epochs and self._eta else ""))
        elif isinstance(event, events.LossBalance):
            for line in event.lines():
                self._finish_line(line)
        elif isinstance(event, events.Failed) and self._interactive:
            self.stream.write("\r\033[K")      # the command prints the error itself
            self.stream.flush()

    def _draw(self, event) -> None:
        from featdistill_core.progress import format_duration

        progress = self._estimator.progress()
        fraction = event.step / max(event.total_steps, 1)
        self._eta = format_duration(progress.stage_eta_seconds if progress else None)
        filled = int(round(fraction * self.WIDTH))
        bar = "█" * filled + "░" * (self.WIDTH - filled)
        self._line = (f"[{event.stage}] {bar} {fraction:4.0%} epoch {event.epoch} step {event.step}/{event.total_steps} "
                      f"loss {event.total:.3f} {event.images_per_sec:6.0f} img/s ETA {self._eta}")
        if self._interactive:
            self.stream.write("\r" + self._line + "\033[K")
            self.stream.flush()

    def _finish_line(self, text: str) -> None:
        if self._interactive:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()


def progress_printer(label: str, stream=None, min_interval: float = 0.2):
    """A ``progress(done, total)`` callback drawing ``label: 192/512 images`` on one line (a terminal only)."""
    stream = stream or sys.stderr
    interactive = hasattr(stream, "isatty") and stream.isatty()
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        if not interactive or (now - last[0] < min_interval and done < total):
            return
        last[0] = now
        stream.write(f"\r{label}: {done}/{total} images\033[K" + ("\n" if done >= total else ""))
        stream.flush()
    return progress
