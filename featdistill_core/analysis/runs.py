"""Analyses of a run as a whole, one call each: what ``featdistill cka`` and the window's panels ask.

* :func:`cka_map_for` — the CKA map of a run's teacher and student (a run file's config, a
  :class:`~featdistill_core.validate.ValidatedRun`, and optionally the run folder whose *trained*
  networks replace the built ones), with where each network's weights came from;
* :func:`evaluate_run` — top-1, top-5 and per-class accuracy of a run folder's teacher and student on
  its test split, side by side (the window's run summary).

Both take ``progress(done, total)`` and ``cancel()`` callables and raise
:class:`~.similarity.AnalysisCancelled` when ``cancel()`` answers True; a problem the user can fix is a
``ValueError`` (a :class:`~featdistill_core.errors.ConfigError` for a run that does not validate) with
a one-line message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .evaluation import Evaluation, evaluate_model
from .rundata import close_data, load_run_data
from .similarity import DEFAULT_BATCH, CKAResult, Cancel, Progress, cka_map_of_run

UNTRAINED = "untrained"


@dataclass(frozen=True, eq=False)
class RunCKA:
    """A CKA map and where each network's weights came from: ``"trained in RUN_DIR"``, ``"weights file
    PATH"`` or :data:`UNTRAINED`."""

    result: CKAResult
    teacher_source: str
    student_source: str
    teacher_arch: str
    student_arch: str

    @property
    def teacher_untrained(self) -> bool:
        return self.teacher_source == UNTRAINED

    @property
    def notes(self) -> tuple[str, ...]:
        """What the user should know about the networks compared, in words (one line each)."""
        notes = []
        if self.teacher_source == UNTRAINED:
            notes.append(f"the teacher has no weights (the run trains it first): these are the similarities "
                         f"of an untrained {self.teacher_arch}")
        if self.student_source.startswith("trained in "):
            notes.append(f"student: the trained one of {self.student_source[len('trained in '):]}")
        return tuple(notes)


def cka_map_for(run, *, run_dir=None, probe: int = 256, layers="blocks", batch_size: int = DEFAULT_BATCH,
                progress: Progress = None, cancel: Cancel = None) -> RunCKA:
    """The CKA map of a run's teacher and student on ``probe`` of its test images.

    ``run``: a :class:`~featdistill_core.config.RunConfig` (validated here: ``ConfigError`` with every
    problem) or a ``ValidatedRun``. ``run_dir``: a run folder; its ``teacher.safetensors`` and
    ``student.safetensors`` (where present) replace the built networks, so an opened run is compared
    as it was trained.
    """
    from featdistill_core.models import load_weights
    from featdistill_core.validate import ValidatedRun, build_model, validate_run

    if probe < 4:
        raise ValueError(f"the probe must hold at least 4 images (the unbiased CKA estimator needs 4); got {probe}")
    plan = run if isinstance(run, ValidatedRun) else validate_run(run)
    config = plan.config
    teacher = plan.teacher if plan.teacher is not None else build_model(config, "teacher", plan.num_classes)
    student = plan.student
    teacher_source = f"weights file {config.teacher.weights}" if config.teacher.weights else UNTRAINED
    student_source = f"weights file {config.student.weights}" if config.student.weights else UNTRAINED
    if run_dir is not None:
        run_dir = Path(run_dir)
        if (run_dir / "teacher.safetensors").is_file():
            load_weights(teacher, run_dir / "teacher.safetensors", name=config.teacher.arch)
            teacher_source = f"trained in {run_dir}"
        if (run_dir / "student.safetensors").is_file():
            load_weights(student, run_dir / "student.safetensors", name=config.student.arch)
            student_source = f"trained in {run_dir}"
    result = cka_map_of_run(plan, probe=probe, layers=layers, batch_size=batch_size, teacher=teacher,
                            student=student, progress=progress, cancel=cancel)
    return RunCKA(result, teacher_source, student_source, config.teacher.arch, config.student.arch)


@dataclass(frozen=True, eq=False)
class RunEvaluation:
    """A run folder's teacher and student evaluated on its test split. ``evaluations`` holds the roles
    that could be evaluated; ``missing`` says, for each other role, why not."""

    run_dir: Path
    class_names: tuple[str, ...]
    evaluations: dict = field(default_factory=dict)     # "teacher" / "student" -> Evaluation
    missing: dict = field(default_factory=dict)         # role -> reason, in words

    def per_class(self, role: str) -> Optional[tuple[float, ...]]:
        """Per-class accuracy (percent, NaN for a class without images) of ``role``, None if not evaluated."""
        evaluation: Optional[Evaluation] = self.evaluations.get(role)
        return None if evaluation is None else tuple(float(v) for v in evaluation.per_class)


ROLES = ("teacher", "student")


def run_weights(run_dir: Path, config, role: str) -> Optional[Path]:
    """The weights a run folder's ``role`` ended with: its saved ``ROLE.safetensors``, else (a teacher
    given, not trained) the run file's weights file; None when there are none."""
    saved = Path(run_dir) / f"{role}.safetensors"
    if saved.is_file():
        return saved
    given = getattr(config, role).weights
    return Path(given) if given and Path(given).is_file() else None


def evaluate_run(run_dir, *, roles=ROLES, device=None, progress: Progress = None,
                 cancel: Cancel = None) -> RunEvaluation:
    """Evaluate ``roles`` of the run folder ``run_dir`` on the run's test split (loaded as the trainer
    loads it). ``progress(done, total)`` counts images over all roles. ``RunFolderError`` (a
    ValueError) for a folder that is not a run folder; a role without weights is listed in ``missing``."""
    from featdistill_core.models import create_model, load_weights
    from featdistill_core.runfolder import load_run

    run_dir = Path(run_dir)
    record = load_run(run_dir, snapshots=False)
    config = record.config
    chosen = {role: run_weights(run_dir, config, role) for role in roles}
    missing = {role: f"the run folder has no {role}.safetensors" + (" and the run file names no weights file"
                                                                      if role == "teacher" else "")
               for role, weights in chosen.items() if weights is None}
    todo = [role for role in roles if chosen[role] is not None]
    if not todo:
        return RunEvaluation(run_dir, (), {}, missing)
    data = load_run_data(config.data, config.seed)
    try:
        total = len(data.test_labels) * len(todo)
        evaluations = {}
        for n, role in enumerate(todo):
            arch = getattr(config, role).arch
            model = create_model(arch, data.num_classes)
            load_weights(model, chosen[role], name=arch)
            offset = n * len(data.test_labels)
            report = (lambda done, _total, o=offset: progress(o + done, total)) if progress is not None else None
            evaluations[role] = evaluate_model(model, data, device=device, progress=report, cancel=cancel)
        names = next(iter(evaluations.values())).class_names
        return RunEvaluation(run_dir, names, evaluations, missing)
    finally:
        close_data(data)


__all__ = ["ROLES", "RunCKA", "RunEvaluation", "UNTRAINED", "cka_map_for", "evaluate_run", "run_weights"]
