"""Everything a run needs to continue, in one object.

:class:`RunState` is the single place the training loop reads and writes where it is: which stage of
the plan, how many epochs of it are done, how many batches of the current epoch, the optimizer, the
learning-rate schedule and the gradient scaler of the stage under way, the running averages of the
step meter, the metrics so far and the epoch history. The models (teacher, student, and the terms'
adapters and memories) are held by reference.

:meth:`RunState.state_dict` turns all of it — the random number generators included — into plain
tensors, numbers, strings, lists and dicts (what ``torch.load(..., weights_only=True)`` accepts), and
:meth:`RunState.load_state_dict` puts it back, so a run written out between two steps continues
exactly as if it had never stopped. The loader needs no state of its own: each epoch's order and
augmentation are drawn from ``(seed, epoch)``, so ``(epoch, batch)`` is its position.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from featdistill_core.events import StepEvent

STATE_VERSION = 1


class StepMeter:
    """Averages the loss components over the steps between two step events, and train accuracy
    over the epoch. Its sums are part of the run state, so a resumed run reports the same averages."""

    def __init__(self) -> None:
        self.reset_window()
        self.reset_epoch()

    def reset_window(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self._total: Optional[torch.Tensor] = None
        self._steps = 0
        self._images = 0
        self._since = time.perf_counter()

    def reset_epoch(self) -> None:
        self._correct: Optional[torch.Tensor] = None
        self._seen = 0

    def add(self, losses: dict, total: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        for name, value in losses.items():
            value = value.detach().float()
            self._sums[name] = self._sums[name] + value if name in self._sums else value
        self._total = total.detach().float() if self._total is None else self._total + total.detach().float()
        self._steps += 1
        self._images += len(labels)
        correct = (logits.detach().argmax(1) == labels).sum()
        self._correct = correct if self._correct is None else self._correct + correct
        self._seen += len(labels)

    @property
    def steps(self) -> int:
        """Steps added since the last step event."""
        return self._steps

    def step_event(self, stage, step, epoch, total_steps, lr) -> StepEvent:
        elapsed = max(time.perf_counter() - self._since, 1e-9)
        steps = max(self._steps, 1)
        event = StepEvent(
            stage=stage, step=step, epoch=epoch, total_steps=total_steps,
            losses={name: value.item() / steps for name, value in self._sums.items()},
            total=(self._total.item() if self._total is not None else 0.0) / steps, lr=float(lr),
            images_per_sec=self._images / elapsed,
        )
        self.reset_window()
        return event

    def train_acc(self) -> float:
        return 100.0 * (self._correct.item() if self._correct is not None else 0) / max(self._seen, 1)

    def state_dict(self) -> dict:
        return {
            "sums": {name: value.detach().cpu() for name, value in self._sums.items()},
            "total": None if self._total is None else self._total.detach().cpu(),
            "steps": self._steps, "images": self._images,
            "correct": None if self._correct is None else self._correct.detach().cpu(),
            "seen": self._seen,
        }

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        self._sums = {name: value.to(device) for name, value in state["sums"].items()}
        self._total = None if state["total"] is None else state["total"].to(device)
        self._steps, self._images = int(state["steps"]), int(state["images"])
        self._correct = None if state["correct"] is None else state["correct"].to(device)
        self._seen = int(state["seen"])
        self._since = time.perf_counter()


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def capture_rng() -> dict:
    """The states of Python's, numpy's and torch's global generators (CUDA's too, when present)."""
    numpy_state = np.random.get_state()
    state = {
        "python": _plain(random.getstate()),
        "numpy": {"name": numpy_state[0], "keys": torch.from_numpy(numpy_state[1].astype(np.int64)),
                  "pos": int(numpy_state[2]), "has_gauss": int(numpy_state[3]), "gauss": float(numpy_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    random.setstate(_tuples(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _plain(value):
    """Python's random state as lists (weights_only loading accepts lists and ints, not tuples of them)."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _tuples(value):
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


@dataclass
class RunState:
    """Where a run is and everything it needs to go on (see the module docstring)."""

    teacher: Optional[nn.Module]
    student: nn.Module
    terms: nn.Module                       # the terms' losses: adapters and memories
    stage_index: int = 0                   # index into the stage plan of the stage under way (or next)
    epoch: int = 0                         # epochs finished in that stage
    batch: int = 0                         # batches finished in the current epoch
    step: int = 0                          # steps finished in the stage
    optimizer: Optional[torch.optim.Optimizer] = None
    schedule: Any = None
    scaler: Any = None
    meter: StepMeter = field(default_factory=StepMeter)
    metrics: dict = field(default_factory=dict)
    history: list = field(default_factory=list)    # one dict per finished epoch: stage, epoch, accuracies
    trained: dict = field(default_factory=dict)    # "teacher"/"student": whether any step trained it

    @property
    def stage_started(self) -> bool:
        """Whether the stage under way has its optimizer (False before its first step)."""
        return self.optimizer is not None

    def finish_epoch(self) -> None:
        """The epoch is done: the next batch is the first of the next epoch; the meter starts afresh
        (a step event averages the steps since the last one within its epoch)."""
        self.epoch += 1
        self.batch = 0
        self.meter = StepMeter()

    def finish_stage(self) -> None:
        self.stage_index += 1
        self.epoch = self.batch = self.step = 0
        self.optimizer = self.schedule = self.scaler = None
        self.meter = StepMeter()

    def state_dict(self) -> dict:
        """All of the run state as plain tensors and containers (loadable with ``weights_only=True``)."""
        return {
            "version": STATE_VERSION,
            "position": {"stage_index": self.stage_index, "epoch": self.epoch, "batch": self.batch, "step": self.step},
            "student": self.student.state_dict(),
            "teacher": self.teacher.state_dict() if self.teacher is not None else None,
            "terms": self.terms.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "schedule": self.schedule.state_dict() if self.schedule is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "meter": self.meter.state_dict(),
            "metrics": dict(self.metrics),
            "history": [dict(h) for h in self.history],
            "trained": dict(self.trained),
            "rng": capture_rng(),
        }

    def load_state_dict(self, state: dict, make_stage_objects, device: torch.device) -> None:
        """Put a :meth:`state_dict` back. ``make_stage_objects()`` builds the optimizer, schedule and
        scaler of the stage at ``stage_index`` (fresh), whose states are then loaded."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"run state version {state.get('version')!r} is not {STATE_VERSION}")
        position = state["position"]
        self.stage_index, self.epoch = int(position["stage_index"]), int(position["epoch"])
        self.batch, self.step = int(position["batch"]), int(position["step"])
        self.student.load_state_dict(state["student"])
        if self.teacher is not None and state["teacher"] is not None:
            self.teacher.load_state_dict(state["teacher"])
        self.terms.load_state_dict(state["terms"])
        if state["optimizer"] is not None:
            self.optimizer, self.schedule, self.scaler = make_stage_objects()
            self.optimizer.load_state_dict(state["optimizer"])
            self.schedule.load_state_dict(state["schedule"])
            if state["scaler"] is not None:
                self.scaler.load_state_dict(state["scaler"])
        else:
            self.optimizer = self.schedule = self.scaler = None
        self.meter = StepMeter()
        self.meter.load_state_dict(state["meter"], device)
        self.metrics = dict(state["metrics"])
        self.history = [dict(h) for h in state["history"]]
        self.trained = dict(state.get("trained", {}))
        restore_rng(state["rng"])


__all__ = ["RunState", "StepMeter", "capture_rng", "restore_rng", "seed_everything"]
