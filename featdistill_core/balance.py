"""Loss balance: how strongly each distillation term pulls next to the task loss, and ``weight = "auto"``.

A method's reference weight suits the recipe it was published with; on another data set, another
pair of networks or another schedule the same weight can swamp the cross-entropy (a FitNets hint at
weight 1 starting above it, logit KD at weight 1 starting at five times it) and the student ends up
worse than trained alone. Before the first step of each student-side stage, :func:`calibrate`
measures the stage's terms on the first ``balance.batches`` training batches — the very batches
training starts with — and

* reports, for each term, its loss and its gradient relative to the task loss
  (:class:`~featdistill_core.events.LossBalance`, emitted once; the CLI prints it, the run folder
  keeps it in ``metrics.jsonl`` and ``balance.json``), warning about a term whose gradient starts
  above ``balance.warn_ratio`` times the cross-entropy's;
* chooses the weight of every ``weight = "auto"`` term (every term with ``balance.auto = true``).

**What is measured.** For each calibration batch, one forward pass of the teacher and the student,
then the gradient of each loss at the student's parameters (not the adapters'): ``g_ce = ‖∇θ CE‖``
(times ``ce_weight``) and ``g_k = ‖∇θ L_k‖``, each averaged over the batches, with the loss values.
An auto weight is ``w_k = target · g_ce / g_k``: the term's gradient starts at ``target`` times the
cross-entropy's.

**Why the gradient, not the loss.** The student moves along the sum of the terms' gradients, so the
gradient is what one term takes from another; loss values do not compare across methods. Attention
transfer's loss is a mean of squared differences of unit-norm maps (10⁻³ to 10⁻²) and still pulls
hard; KD's loss carries a T² that its gradient at the logits only partly keeps (T²/T); a hint's loss
is in the units of the teacher's activations. Equal loss ratios would give weights that differ by
orders of magnitude in effect. The loss ratio is reported too, because it is what a user sees in the
loss curves; warnings and auto weights go by the gradient. (Measured on the demo: its recipe's
FitNets hint on ``layer3`` starts at 1.3× the cross-entropy in loss but 0.5× in gradient, and the
recipe gains 35 points; attention transfer at β = 1000 on ``layer3`` starts at 5× in loss and 17× in
gradient, and holds the student below the baseline.) The cost is one backward pass per term on each
calibration batch (a few training steps' worth, once per run).

**Measurement leaves no trace.** The batches are those of epoch 0, drawn from the loader's own
``(seed, epoch)`` stream; the random generators, the student's and the adapters' parameters and
buffers (batch-norm statistics, memory banks) are put back afterwards and no optimizer step is
taken, so a run with ``weight = "auto"`` trains exactly as the same run with the chosen weights
written in (a test holds it to that).

**Ramps.** A term's loss is taken at the progress of its stage's last step, so a method that ramps its
term in (DKD's warm-up) is measured at the strength it reaches in this run; the ramp still eases it in.

:func:`measure_run` measures a validated run without training it (``featdistill check``, the window's
pair table); :func:`calibrate` is the trainer's one call, at the start of each student-side stage
after the stage's terms have run their one-off ``prepare`` (so a stage with an ``"init"`` term gets its
own report). A resumed run reads the weights it chose from ``balance.json`` instead of measuring
again.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from featdistill_core.config import MAX_TERM_WEIGHT, RunConfig
from featdistill_core.events import LossBalance, TermBalance
from featdistill_core.losses import TrainingProgress
from featdistill_core.runfolder import read_balance
from featdistill_core.runstate import capture_rng, restore_rng
from featdistill_core.stages import Stage

__all__ = ["BalanceMeasurement", "auto_weight", "calibrate", "measure_run", "measure_terms", "summarise"]


@dataclasses.dataclass(frozen=True)
class BalanceMeasurement:
    """Raw measurements: the task loss's and each term's mean loss and gradient norm (unweighted)."""

    batches: int
    ce: float
    ce_grad_norm: float
    loss: tuple[float, ...]         # per term, in the distiller's order
    grad_norm: tuple[float, ...]


def measure_terms(distiller, loader, *, batches: int, stage_epochs: dict[str, int],
                  terms: Optional[Sequence[int]] = None) -> BalanceMeasurement:
    """The unweighted loss and gradient norm at the student's parameters of the terms at ``terms``
    (indices into ``distiller.terms``; default all), and the cross-entropy's, averaged over the first
    ``batches`` batches of the loader's epoch 0; the other terms get NaN. Leaves no trace (see the
    module docstring). ``stage_epochs`` maps ``"init"``/``"student"`` to the stage's epochs."""
    chosen = list(range(len(distiller.terms))) if terms is None else list(terms)
    student, terms = distiller.student, distiller.term_losses
    params = [p for p in student.parameters() if p.requires_grad]
    saved_student = _clone_state(student)
    saved_terms = _clone_state(terms)
    rng = capture_rng()
    modes = (student.training, terms.training)
    count = min(max(int(batches), 0), len(loader))
    n_terms = len(distiller.terms)
    nan = float("nan")
    sums = {"ce": 0.0, "ce_grad": 0.0, "loss": [nan] * n_terms, "grad": [nan] * n_terms}
    for k in chosen:
        sums["loss"][k] = sums["grad"][k] = 0.0
    steps_per_epoch = len(loader)
    groups: dict[str, list[int]] = {}
    for i in chosen:
        groups.setdefault(str(distiller.terms[i].stage), []).append(i)
    if not groups:
        groups[str(Stage.STUDENT)] = []        # the cross-entropy alone
    try:
        student.train()
        terms.train()
        for b, batch in enumerate(loader.epoch_batches(0)):
            if b >= count:
                break
            ce_done = False
            for stage, indices in groups.items():
                epochs = max(int(stage_epochs.get(stage, 1)), 1)
                progress = TrainingProgress(stage, epochs, epochs, epochs * steps_per_epoch,
                                            epochs * steps_per_epoch, steps_per_epoch)
                logits, losses = distiller.components(batch.images, batch.labels, batch.indices, progress,
                                                      indices, ce=not ce_done, remember=False)
                if not ce_done:
                    value = losses["ce"].float()
                    sums["ce"] += float(value.detach())
                    sums["ce_grad"] += _grad_norm(value, params)
                    ce_done = True
                for k in indices:
                    value = losses[distiller.terms[k].name].float()
                    sums["loss"][k] += float(value.detach())
                    sums["grad"][k] += _grad_norm(value, params)
                del logits, losses
    finally:
        student.load_state_dict(saved_student)
        terms.load_state_dict(saved_terms)
        student.train(modes[0])
        terms.train(modes[1])
        restore_rng(rng)
    n = max(count, 1)
    return BalanceMeasurement(
        batches=count, ce=sums["ce"] / n, ce_grad_norm=sums["ce_grad"] / n,
        loss=tuple(v / n for v in sums["loss"]), grad_norm=tuple(v / n for v in sums["grad"]),
    )


def auto_weight(target: float, task_grad_norm: float, term_grad_norm: float) -> Optional[float]:
    """``target · task_grad_norm / term_grad_norm`` (at most the largest weight a run file allows);
    None when it cannot be chosen (a term or a task loss with no finite, non-zero gradient)."""
    if not (math.isfinite(task_grad_norm) and math.isfinite(term_grad_norm)) or term_grad_norm <= 0 or task_grad_norm <= 0:
        return None
    return min(target * task_grad_norm / term_grad_norm, MAX_TERM_WEIGHT)


def summarise(distiller, measured: BalanceMeasurement, *, ce_weight: float, target: float, warn_ratio: float,
              teacher_trained: bool = True, terms: Optional[Sequence[int]] = None, stage: str = "",
              skipped: Optional[dict[int, str]] = None) -> LossBalance:
    """The report of a measurement of the terms at ``terms`` (default all), with auto weights chosen (the
    distiller itself is not changed). ``skipped`` maps the index of a term that was not measured to why."""
    scale = ce_weight if ce_weight > 0 else 1.0
    task_loss, task_grad = scale * measured.ce, scale * measured.ce_grad_norm
    skipped = skipped or {}
    rows = []
    indices = list(range(len(distiller.terms))) if terms is None else list(terms)
    for k in indices:
        plan, loss, grad = distiller.terms[k], measured.loss[k], measured.grad_norm[k]
        weight, note, warning = float(plan.weight), "", ""
        finite = math.isfinite(loss) and math.isfinite(grad)
        if k in skipped:
            note = skipped[k]
        elif plan.auto:
            chosen = auto_weight(target, task_grad, grad) if finite else None
            if chosen is None:
                note = f"could not be chosen (no usable gradient at the start): kept the reference weight {weight:g}"
            else:
                weight = chosen
                note = f"chosen for a gradient {target:g}× the cross-entropy's"
        loss_ratio = _ratio(weight * loss, task_loss)
        grad_ratio = _ratio(weight * grad, task_grad)
        if k in skipped:
            pass
        elif not finite:
            warning = "its loss or gradient is not finite at the start"
        elif not plan.auto and grad_ratio > warn_ratio:
            warning = (f"its gradient starts at {grad_ratio:.3g}× the cross-entropy's (above {warn_ratio:g}×) and "
                       f"may swamp the task loss; try weight = \"auto\" or a smaller weight")
        elif plan.auto and grad_ratio > warn_ratio:
            warning = f"balance.target {target:g} is above balance.warn_ratio {warn_ratio:g}"
        rows.append(TermBalance(
            name=plan.name, field=plan.field, method=plan.method.key, stage=str(plan.stage), weight=weight,
            auto=bool(plan.auto), loss=loss, grad_norm=grad, loss_ratio=loss_ratio, grad_ratio=grad_ratio,
            warning=warning, note=note,
        ))
    return LossBalance(batches=measured.batches, task_loss=task_loss, task_grad_norm=task_grad, target=target,
                       warn_ratio=warn_ratio, terms=tuple(rows), teacher_trained=teacher_trained, stage=stage)


def calibrate(distiller, loader, config: RunConfig, *, stage: str, emit: Callable,
              run_dir: str | Path | None = None) -> None:
    """The trainer's call, at the start of each student-side stage once its terms are prepared: the first
    time for ``stage``, measure the stage's terms, set their auto weights in the distiller and emit the
    stage's :class:`LossBalance`; then nothing. A run folder whose ``balance.json`` holds this stage
    already (a resumed run) gives the weights without a new measurement."""
    stage = str(stage)
    done = getattr(distiller, "balance", None)
    if done is None:
        done = distiller.balance = {}
    indices = distiller.terms_in(stage)
    if stage in done or not indices:
        return
    recorded = {r.stage: r for r in read_balance(run_dir)} if run_dir is not None else {}
    if stage in recorded:
        _apply(distiller, recorded[stage].weights())
        done[stage] = recorded[stage]
        return
    if config.balance.batches < 1:
        done[stage] = None     # never measured (validation refuses auto weights without batches)
        return
    epochs = {str(Stage.INIT): config.init_epochs, str(Stage.STUDENT): config.epochs}
    measured = measure_terms(distiller, loader, batches=config.balance.batches, stage_epochs=epochs, terms=indices)
    report = summarise(distiller, measured, ce_weight=config.ce_weight, target=config.balance.target,
                       warn_ratio=config.balance.warn_ratio, terms=indices, stage=stage)
    _apply(distiller, report.weights())
    done[stage] = report
    emit(report)


def measure_run(run, *, batches: Optional[int] = None, device: str | torch.device = "cpu", data=None) -> LossBalance:
    """Measure a :class:`~featdistill_core.validate.ValidatedRun` without training it: what its terms
    start at and the weights ``"auto"`` would choose. For ``featdistill check`` and the window's pair
    table. Loads the data (or takes ``data``, a :class:`~featdistill_core.data.DataBundle`), builds the
    terms on ``device`` and leaves the run's models and the random generators as they were.

    A run that trains its teacher is measured with the teacher as it is now (untrained):
    ``teacher_trained`` is then False, and the trainer measures again once it has trained it. A term
    with a one-off preparation (FT, OFD: ``prepare``) is not measured here — preparing it can take
    epochs — and says so; the trainer measures it once prepared. The report's ``stage`` is ``""``:
    it covers every stage's terms.
    """
    from featdistill_core.analysis.rundata import close_data, load_run_data
    from featdistill_core.distiller import Distiller

    cfg = run.config
    count = cfg.balance.batches if batches is None else int(batches)
    if not run.terms or count < 1 or run.teacher is None:
        return LossBalance(batches=0, task_loss=float("nan"), task_grad_norm=float("nan"), target=cfg.balance.target,
                           warn_ratio=cfg.balance.warn_ratio, terms=(), teacher_trained=not cfg.trains_teacher)
    device = torch.device(device)
    rng = capture_rng()
    teacher, student = run.teacher, run.student
    modes = (teacher.training, student.training)
    places = (_device_of(teacher), _device_of(student))
    distiller = owned = None
    try:
        if data is None:
            data = owned = load_run_data(cfg.data, seed=cfg.seed)     # as the trainer loads it
        teacher.to(device).eval()
        student.to(device)
        if run.rng_state:
            restore_rng(run.rng_state)     # adapters drawn as the trainer draws them
        distiller = Distiller(run.terms, teacher, student, ce_weight=cfg.ce_weight, num_classes=run.num_classes,
                              dataset_size=len(data.train_labels), device=device,
                              teacher_name=cfg.teacher.arch, student_name=cfg.student.arch).to(device)
        loader = data.train_loader(cfg.batch_size, augment=cfg.data.augment, seed=cfg.seed, device=device)
        epochs = {str(Stage.INIT): cfg.init_epochs, str(Stage.STUDENT): cfg.epochs}
        skipped = {i: "measured when training starts: it needs its one-off preparation first"
                   for i, term in enumerate(distiller.term_losses) if getattr(term, "needs_prepare", False)
                   and not term.is_prepared}
        measure = [i for i in range(len(run.terms)) if i not in skipped]
        with torch.enable_grad():
            measured = measure_terms(distiller, loader, batches=count, stage_epochs=epochs, terms=measure)
        return summarise(distiller, measured, ce_weight=cfg.ce_weight, target=cfg.balance.target,
                         warn_ratio=cfg.balance.warn_ratio, teacher_trained=not cfg.trains_teacher,
                         skipped=skipped)
    finally:
        if distiller is not None:
            distiller.close()
        if owned is not None:
            close_data(owned)
        teacher.to(places[0]).train(modes[0])
        student.to(places[1]).train(modes[1])
        restore_rng(rng)


def _apply(distiller, weights: dict[str, float]) -> None:
    distiller.terms = [dataclasses.replace(plan, weight=float(weights.get(plan.name, plan.weight)))
                       for plan in distiller.terms]


def _ratio(value: float, reference: float) -> float:
    if not math.isfinite(value) or not math.isfinite(reference):
        return float("nan")
    if reference <= 0:
        return float("inf") if value > 0 else 0.0
    return value / reference


def _grad_norm(value: torch.Tensor, params) -> float:
    if not value.requires_grad:
        return 0.0
    grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
    return math.sqrt(sum(float(g.detach().float().pow(2).sum()) for g in grads if g is not None))


def _clone_state(module) -> dict:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def _device_of(module) -> torch.device:
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")

