"""Typed events the trainer emits to its subscribers.

Every event is a frozen dataclass holding plain Python numbers, strings and numpy arrays, so a
subscriber (the CLI's progress bar, the run folder writer, the window) never touches a tensor and
never needs torch to read one. Subscribers are called on the training thread: they must be quick and
must not block (the window re-emits them as Qt signals and redraws on a timer).

``stage`` names the phase of a run, a :class:`~featdistill_core.stages.Stage`: ``"teacher"``
(training the teacher first), ``"init"`` (a distillation-only initialisation stage, as FSP's original
recipe uses) or ``"student"`` (the main stage: the student trained with its task loss and every
distillation term). A ``Stage`` is a ``str``: it compares equal to those words.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import numpy as np

from featdistill_core.stages import Stage


@dataclass(frozen=True)
class StageStarted:
    stage: Stage
    epochs: int
    steps_per_epoch: int
    total_steps: int          # steps in this stage
    run_dir: str


@dataclass(frozen=True)
class StepEvent:
    stage: Stage
    step: int                 # global step within the stage, starting at 1
    epoch: int                # 1-based epoch
    total_steps: int          # steps in this stage
    losses: dict[str, float]  # each weighted loss component by name: "ce", "kd", "at:layer1", ...
    total: float              # the sum that was back-propagated
    lr: float
    images_per_sec: float


@dataclass(frozen=True)
class EpochEvent:
    stage: Stage
    epoch: int
    epochs: int
    train_acc: float          # top-1 in percent, over the epoch's training batches
    test_acc: float           # top-1 in percent, on the test split
    teacher_acc: Optional[float] = None   # the teacher's test top-1 (measured once per run)


@dataclass(frozen=True)
class PairMaps:
    """Attention maps of one distilled pair on the probe images.

    ``teacher`` and ``student`` are float32 arrays of shape (N, H, W), brought to one spatial size
    (the larger map average-pooled to the smaller) and each map scaled to mean 1 over its positions,
    so the two share one colour scale and their difference is meaningful.
    """

    name: str                 # the pair's name, e.g. "at:layer2<-layer2"
    teacher_layer: str
    student_layer: str
    teacher: np.ndarray
    student: np.ndarray


@dataclass(frozen=True)
class AttentionSnapshot:
    stage: Stage
    step: int
    epoch: int
    images: np.ndarray        # probe images, float32 (N, H, W, 3) in [0, 1], de-normalised
    labels: tuple[int, ...]
    pairs: tuple[PairMaps, ...]


@dataclass(frozen=True)
class TermBalance:
    """How one distillation term starts next to the task loss (see :class:`LossBalance`)."""

    name: str                 # the term's loss-component name, "hint:layer3<-layer3"
    field: str                # where it is in the run file: "pairs[2]", "kd"
    method: str
    stage: str                # "student" or "init"
    weight: float             # the weight training uses (the chosen one for an auto weight)
    auto: bool                # whether the weight was chosen from the calibration batches
    loss: float               # the unweighted term, mean over the calibration batches
    grad_norm: float          # ‖∇ term‖ at the student's parameters, unweighted, mean over the batches
    loss_ratio: float         # weight · loss / task loss
    grad_ratio: float         # weight · ‖∇ term‖ / ‖∇ task loss‖
    warning: str = ""         # why this term needs a look, "" if it does not
    note: str = ""            # how an auto weight was chosen, or why it could not be

    def describe(self) -> str:
        """One line: ``hint:layer3<-layer3: weight 1 starts at 1.30× the cross-entropy (gradient 0.42×)``."""
        weight = f"weight auto → {self.weight:.4g}" if self.auto else f"weight {self.weight:g}"
        line = (f"{self.name}: {weight}; starts at {self.loss_ratio:.3g}× the cross-entropy "
                f"(gradient {self.grad_ratio:.3g}×)")
        return line + (f" — {self.note}" if self.note else "") + (f" — warning: {self.warning}" if self.warning else "")


@dataclass(frozen=True)
class LossBalance:
    """How a stage's terms start next to the task loss, measured on the first training batches after
    the stage's terms are prepared and before its first step; emitted once per student-side stage."""

    batches: int              # calibration batches measured
    task_loss: float          # ce_weight · cross-entropy (the cross-entropy itself when ce_weight is 0), mean
    task_grad_norm: float     # ‖∇ task loss‖ at the student's parameters, mean over the batches
    target: float             # the gradient ratio an auto weight is chosen for
    warn_ratio: float         # a term above this ratio (loss or gradient) is warned about
    terms: tuple[TermBalance, ...]
    teacher_trained: bool = True   # False: measured with a teacher this run has not trained yet
    stage: str = "student"         # the stage whose terms these are ("" : every stage's, measured without training)

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(f"{t.name}: {t.warning}" for t in self.terms if t.warning)

    def weights(self) -> dict[str, float]:
        """The weight training uses, by term name."""
        return {t.name: t.weight for t in self.terms}

    def lines(self) -> list[str]:
        where = f" ({self.stage} stage)" if self.stage and self.stage != "student" else ""
        head = (f"loss balance{where} on {self.batches} training batch{'es' if self.batches != 1 else ''}: "
                f"task loss {self.task_loss:.4g}")
        lines = [head] + ["  " + t.describe() for t in self.terms]
        if not self.teacher_trained:
            lines.append("  (measured with a teacher this run has yet to train: the trainer measures again "
                         "once it is trained)")
        return lines


@dataclass(frozen=True)
class Finished:
    metrics: dict             # e.g. {"student_test_acc": 81.2, "teacher_test_acc": 94.0}
    run_dir: str
    stopped: bool = False     # True when a stop request ended the run early


@dataclass(frozen=True)
class Failed:
    error: str                # one readable line
    kind: str = ""            # the exception's class name
    run_dir: str = ""
    details: str = dataclasses.field(default="", repr=False)   # the traceback, for a "details" box
    field: str = ""           # the run-file field at fault ("optim.lr", "pairs[2].student"), "" if none
    problems: tuple = ()      # every (field, message) when the run was refused by validation
    where: str = ""           # the position in words: "student stage, epoch 2, step 13", "" before training
    holds: tuple = ()         # (file name, what it holds) for what the run folder holds after the failure


@dataclass(frozen=True)
class Checkpointed:
    """The run state was written to ``file`` (``checkpoint-last.pt``); ``best`` when it is also the best."""

    file: str
    reason: str               # "epoch" | "timed" | "stop" | "failure"
    stage: Stage
    epoch: int                # epochs finished in the stage
    batch: int                # batches finished in the current epoch
    step: int                 # steps finished in the stage
    best: bool = False


@dataclass(frozen=True)
class Resumed:
    """The run continues from a checkpoint at this position (every event recorded after that position,
    before this one, is superseded: the resumed run produces it again). ``file`` "" means from the start."""

    stage: Stage
    epoch: int
    batch: int
    step: int
    file: str = ""
    run_dir: str = ""


Event = (StageStarted | LossBalance | StepEvent | EpochEvent | AttentionSnapshot | Finished | Failed | Checkpointed
         | Resumed)
