"""Where a run is and when it will end, from its events: the one estimate the CLI and the window show.

:class:`ProgressEstimator` is fed the trainer's events in order (``update(event)``) and answers
:meth:`~ProgressEstimator.progress` with a :class:`Progress`: the stage and its place in the plan,
epoch and step, a smoothed images-per-second and the estimated time left for the stage and for the
whole run (later stages are estimated at the current speed, with as many steps per epoch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from featdistill_core.events import StageStarted, StepEvent
from featdistill_core.stages import PlannedStage, Stage

SPEED_SMOOTHING = 0.3   # weight of the newest images/s reading in the running average


@dataclass(frozen=True)
class Progress:
    """Where a run is, for a progress bar and a status line."""

    stage: Stage
    stage_index: int           # 1-based position in the plan
    stage_count: int
    epoch: int
    epochs: int
    step: int                  # within the stage
    total_steps: int           # of the stage
    images_per_sec: float      # 0 until measured
    eta_seconds: Optional[float]         # for the whole run; None until the speed is measured
    stage_eta_seconds: Optional[float]   # for the stage under way
    fraction: float            # of the whole run's steps, 0..1

    @property
    def stage_fraction(self) -> float:
        return self.step / max(self.total_steps, 1)


class ProgressEstimator:
    """Turns stage and step events into :class:`Progress` (see the module docstring)."""

    def __init__(self, stages: Sequence[PlannedStage], batch_size: int):
        self.stages = tuple(stages)
        self.batch_size = batch_size
        self.stage: Optional[StageStarted] = None
        self.last: Optional[StepEvent] = None
        self.images_per_sec = 0.0

    def update(self, event) -> None:
        if isinstance(event, StageStarted):
            self.stage = event
            self.last = None
        elif isinstance(event, StepEvent):
            self.last = event
            if event.images_per_sec > 0:
                alpha = SPEED_SMOOTHING if self.images_per_sec else 1.0
                self.images_per_sec += alpha * (event.images_per_sec - self.images_per_sec)

    def _index(self) -> int:
        names = [planned.stage for planned in self.stages]
        return names.index(self.stage.stage) if self.stage is not None and self.stage.stage in names else 0

    def progress(self) -> Optional[Progress]:
        if self.stage is None:
            return None
        index = self._index()
        steps_per_epoch = self.stage.steps_per_epoch
        step = self.last.step if self.last else 0
        epoch = self.last.epoch if self.last else 1
        done = sum(p.epochs * steps_per_epoch for p in self.stages[:index]) + step
        total = sum(p.epochs * steps_per_epoch for p in self.stages) or max(self.stage.total_steps, 1)
        stage_eta = eta = None
        if self.images_per_sec > 0:
            seconds_per_step = self.batch_size / self.images_per_sec
            stage_eta = max(self.stage.total_steps - step, 0) * seconds_per_step
            eta = max(total - done, 0) * seconds_per_step
        return Progress(
            stage=Stage(self.stage.stage), stage_index=index + 1, stage_count=max(len(self.stages), 1),
            epoch=epoch, epochs=self.stage.epochs, step=step, total_steps=self.stage.total_steps,
            images_per_sec=self.images_per_sec, eta_seconds=eta, stage_eta_seconds=stage_eta,
            fraction=min(done / max(total, 1), 1.0),
        )


def step_event_due(step: int, log_every: int, total_steps: int) -> bool:
    """Whether the trainer emits a step event after ``step`` (1-based, within its stage): every
    ``log_every`` steps and at the stage's last step, and before the first ``log_every`` also at
    steps 1, 2, 4, 8, … — so a model whose steps take seconds shows its first losses, its speed and
    an ETA after one or two steps instead of after ``log_every`` of them. Depends on the step alone,
    so a run's log is the same on every machine (and after a resume)."""
    return step % log_every == 0 or step == total_steps or (step < log_every and step & (step - 1) == 0)


def format_duration(seconds: Optional[float]) -> str:
    """``75`` → ``"1:15"``, ``3725`` → ``"1:02:05"``; ``None`` → ``"–"``."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "–"
    seconds = int(round(max(seconds, 0)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


__all__ = ["Progress", "ProgressEstimator", "format_duration", "step_event_due"]
