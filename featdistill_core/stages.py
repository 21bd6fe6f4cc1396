"""The phases of a run, one vocabulary for the trainer, its events, the run folder and the window.

A run goes through up to three stages, always in this order:

* :attr:`Stage.TEACHER` — the teacher is trained first (a run with no teacher weights file);
* :attr:`Stage.INIT` — a distillation-only initialisation of the student, for the terms whose stage
  is ``"init"`` (FSP's and AB's original recipes);
* :attr:`Stage.STUDENT` — the main stage: the student with its task loss and every other term.

A distillation term says in which stage it is used with the same words: ``stage = "student"`` (the
default; run files written by featdistill 0.1 say ``"joint"``, read as ``"student"``) or ``"init"``.

:func:`plan_stages` computes a run's stages once; the trainer runs exactly that plan, and the
window and the progress estimate show it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Stage(str, enum.Enum):
    TEACHER = "teacher"
    INIT = "init"
    STUDENT = "student"

    __str__ = str.__str__          # "teacher", not "Stage.TEACHER", in messages and f-strings
    __format__ = str.__format__

    @property
    def title(self) -> str:
        return _TITLES[self]


_TITLES = {
    Stage.TEACHER: "Training the teacher",
    Stage.INIT: "Initialisation stage",
    Stage.STUDENT: "Distilling the student",
}

TERM_STAGES = (Stage.STUDENT.value, Stage.INIT.value)
"""The stages a distillation term can belong to."""

LEGACY_TERM_STAGES = {"joint": Stage.STUDENT.value}
"""Older spellings of a term's stage, accepted when a run file is read."""


@dataclass(frozen=True)
class PlannedStage:
    """One stage of a run: which, for how many epochs, and which network it trains."""

    stage: Stage
    epochs: int

    @property
    def trains(self) -> str:
        """``"teacher"`` or ``"student"``: the network whose weights this stage updates."""
        return "teacher" if self.stage is Stage.TEACHER else "student"


def plan_stages(config) -> tuple[PlannedStage, ...]:
    """The stages a run goes through, in order (``config`` is a :class:`~featdistill_core.config.RunConfig`)."""
    plan = []
    if not config.teacher.weights and config.teacher.train_epochs > 0:
        plan.append(PlannedStage(Stage.TEACHER, config.teacher.train_epochs))
    if config.init_epochs > 0 and any(term.stage == Stage.INIT.value for term in config.terms):
        plan.append(PlannedStage(Stage.INIT, config.init_epochs))
    if config.epochs > 0:
        plan.append(PlannedStage(Stage.STUDENT, config.epochs))
    return tuple(plan)


__all__ = ["LEGACY_TERM_STAGES", "PlannedStage", "Stage", "TERM_STAGES", "plan_stages"]
