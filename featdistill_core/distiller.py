"""The student's objective: task loss plus every weighted distillation term of a run.

A :class:`Distiller` holds the frozen teacher, the student, forward hooks on the layers that the
run's terms tap, and one :class:`~featdistill_core.losses.TermLoss` per term (with its trainable
adapter, if any). Calling it on a batch returns the student's logits and a dict of weighted loss
components by name::

    {"ce": 1.0 * CE, "kd": w * KD, "at:layer2<-layer2": w * AT, ...}

The trainer sums the components and back-propagates; the names become the curves in the window.
After the optimizer step the trainer calls :meth:`Distiller.after_step`, which runs the terms'
``after_step`` hooks (memory banks) on the step just taken. Before the first step of a stage it calls
:meth:`Distiller.prepare`, which runs the one-off ``prepare`` of the stage's terms that have one
(FT's paraphraser, OFD's margins) and have not run it yet.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from featdistill_core.events import PairMaps
from featdistill_core.layers import FeatureHooks
from featdistill_core.losses import (
    BuildContext, PrepareContext, StepContext, Taps, TrainingProgress, attention_map, build_term,
)
from featdistill_core.speed import as_autograd_tensor, frozen_forward
from featdistill_core.stages import Stage


class Distiller(nn.Module):
    """``terms`` are the :class:`~featdistill_core.validate.TermPlan` s of a validated run."""

    def __init__(self, terms, teacher: nn.Module | None, student: nn.Module, *, ce_weight: float = 1.0,
                 num_classes: int = 10, dataset_size: int = 0, device: torch.device | None = None,
                 teacher_name: str = "teacher", student_name: str = "student"):
        super().__init__()
        self.student = student
        self._teacher = [teacher]          # a list keeps the frozen teacher out of parameters()/state_dict()
        self.terms = list(terms)
        self.ce_weight = ce_weight
        device = device or torch.device("cpu")
        self.device = device
        self.term_losses = nn.ModuleList(
            build_term(BuildContext(
                method=plan.method.key, options=plan.options,
                student_shapes=plan.student_shapes, teacher_shapes=plan.teacher_shapes,
                student_paths=plan.student_paths, teacher_paths=plan.teacher_paths,
                num_classes=num_classes, dataset_size=dataset_size, device=device,
                teacher=teacher, student=student,
            ))
            for plan in self.terms
        )
        self.teacher_hooks = self._hooks(teacher, "teacher_paths", teacher_name) if teacher is not None else None
        self.student_hooks = self._hooks(student, "student_paths", student_name)
        self._teacher_probe_maps: dict[int, torch.Tensor] = {}
        self._last_steps: list[tuple[int, StepContext]] = []

    def _hooks(self, model: nn.Module, side: str, name: str) -> FeatureHooks:
        outputs = [p for plan in self.terms if plan.method.taps == Taps.OUTPUT for p in getattr(plan, side)]
        inputs = [p for plan in self.terms if plan.method.taps == Taps.INPUT for p in getattr(plan, side)]
        return FeatureHooks(model, outputs, name, inputs=inputs)

    @property
    def teacher(self) -> nn.Module | None:
        return self._teacher[0]

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The student's parameters and every term's adapter."""
        return list(self.student.parameters()) + list(self.term_losses.parameters())

    def terms_in(self, stage: str) -> list[int]:
        """Indices of the terms used in ``stage`` (``"init"`` or ``"student"``)."""
        return [i for i, plan in enumerate(self.terms) if plan.stage == stage]

    def forward(self, images: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor,
                progress: TrainingProgress):
        """Student logits and the weighted loss components for one batch."""
        stage = progress.stage
        active = self.terms_in(stage)
        with_ce = stage == Stage.STUDENT and self.ce_weight > 0
        student_logits, raw = self.components(images, labels, indices, progress, active, ce=with_ce)
        losses: dict[str, torch.Tensor] = {}
        if with_ce:
            losses["ce"] = self.ce_weight * raw["ce"]
        for i in active:
            plan = self.terms[i]
            losses[plan.name] = plan.weight * raw[plan.name]
        return student_logits, losses

    def components(self, images: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor,
                   progress: TrainingProgress, terms: list[int], *, ce: bool = True, remember: bool = True):
        """Student logits and the *unweighted* losses of the terms at ``terms`` (indices), plus the
        cross-entropy as ``"ce"`` when ``ce``. With ``remember`` the steps are kept for :meth:`after_step`
        (calibration passes ``False``: it must not feed memory banks)."""
        teacher_logits = None
        if terms:        # the frozen teacher under inference mode; what the loss reads copied out of it
            teacher_logits = as_autograd_tensor(frozen_forward(self.teacher, images))
        student_logits = self.student(images)

        losses: dict[str, torch.Tensor] = {}
        if ce:
            losses["ce"] = F.cross_entropy(student_logits, labels)
        steps = []
        for i in terms:
            plan = self.terms[i]
            taps = plan.method.taps
            step = StepContext(
                student=tuple(self.student_hooks.tapped(p, taps) for p in plan.student_paths),
                teacher=tuple(as_autograd_tensor(self.teacher_hooks.tapped(p, taps)) for p in plan.teacher_paths),
                student_logits=student_logits, teacher_logits=teacher_logits,
                labels=labels, indices=indices, progress=progress,
            )
            losses[plan.name] = self.term_losses[i](step)
            steps.append((i, step))
        if remember:
            self._last_steps = steps
        return student_logits, losses

    def prepare(self, stage: str, loader, *, checkpoint=None, report=None) -> list[str]:
        """Run the one-off ``prepare`` of every term of ``stage`` that has one and has not run it.

        ``loader`` gives the training batches (``epoch_batches(k)``, ``len()``); ``checkpoint()`` is
        called by the preparation between batches (pause / stop); ``report(done, total, loss)`` receives
        its progress. The teacher must be frozen (eval mode) by now. Returns the names of the terms
        prepared now; a term prepared before (in this run or in a loaded state) is skipped.
        """
        prepared = []
        for i in self.terms_in(str(stage)):
            term = self.term_losses[i]
            if term.is_prepared:
                continue
            plan = self.terms[i]
            context = PrepareContext(
                stage=str(stage), loader=loader, teacher_features=self._teacher_tapper(plan),
                device=self.device, teacher=self.teacher, student=self.student,
                **{name: value for name, value in (("checkpoint", checkpoint), ("report", report)) if value is not None},
            )
            term.prepare(context)
            prepared.append(plan.name)
        return prepared

    def _teacher_tapper(self, plan):
        paths, taps = plan.teacher_paths, plan.method.taps

        @torch.no_grad()
        def teacher_features(images: torch.Tensor) -> tuple[torch.Tensor, ...]:
            self.teacher(images)
            return tuple(self.teacher_hooks.tapped(p, taps) for p in paths)

        return teacher_features

    @torch.no_grad()
    def after_step(self) -> None:
        """Run each term's hook after the optimizer step (e.g. update a memory bank)."""
        for i, step in self._last_steps:
            self.term_losses[i].after_step(step)
        self._last_steps = []

    @torch.no_grad()
    def attention_maps(self, probe_images: torch.Tensor) -> tuple[PairMaps, ...]:
        """Teacher's and student's attention maps on the probe images, one entry per 4-D layer pair.

        Each map is |F|² averaged over channels (the attention-transfer map), the larger of the
        two pooled to the smaller, and scaled to mean 1, so both share one colour scale.
        """
        shown_terms = [i for i, plan in enumerate(self.terms)
                       if plan.method.taps == Taps.OUTPUT and plan.teacher_paths]
        if not shown_terms or self.teacher is None:
            return ()
        was_training = self.student.training
        self.student.eval()
        self.student(probe_images)
        self.student.train(was_training)
        if not self._teacher_probe_maps:   # the teacher is frozen: its maps never change
            self.teacher(probe_images)
            for i in shown_terms:
                feat = self.teacher_hooks.features[self.terms[i].teacher_paths[0]]
                if feat.dim() == 4:
                    self._teacher_probe_maps[i] = attention_map(feat.float())
        maps = []
        shown = set()
        for i in shown_terms:
            plan = self.terms[i]
            layers = (plan.teacher_paths[0], plan.student_paths[0])
            if i not in self._teacher_probe_maps or layers in shown:
                continue            # one row per layer pair, even when two methods share it
            shown.add(layers)
            feat = self.student_hooks.features[plan.student_paths[0]]
            if feat.dim() != 4:
                continue
            teacher_map, student_map = _same_size(self._teacher_probe_maps[i], attention_map(feat.float()))
            maps.append(PairMaps(
                name=plan.name,
                teacher_layer=plan.teacher_paths[0],
                student_layer=plan.student_paths[0],
                teacher=_mean_one(teacher_map),
                student=_mean_one(student_map),
            ))
        return tuple(maps)

    def close(self) -> None:
        if self.teacher_hooks is not None:
            self.teacher_hooks.remove()
        self.student_hooks.remove()


def _same_size(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Average-pool the larger of two (N, H, W) maps to the smaller's size."""
    if a.shape[-2:] == b.shape[-2:]:
        return a, b
    if a.shape[-1] * a.shape[-2] > b.shape[-1] * b.shape[-2]:
        return F.adaptive_avg_pool2d(a.unsqueeze(1), b.shape[-2:]).squeeze(1), b
    return a, F.adaptive_avg_pool2d(b.unsqueeze(1), a.shape[-2:]).squeeze(1)


def _mean_one(maps: torch.Tensor):
    mean = maps.flatten(1).mean(1).clamp_min(1e-12).view(-1, 1, 1)
    return (maps / mean).float().cpu().numpy()
