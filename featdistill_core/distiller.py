"""The student's objective: task loss plus every weighted distillation term of a run.

A :class:`Distiller` holds the frozen teacher, the student, forward hooks on the layers that the
run's pairs name, and one loss module per pair (with its trainable regressor, if any). Calling it on
a batch returns the student's logits and a dict of weighted loss components by name::

    {"ce": 1.0 * CE, "kd": w * KD, "at:layer2<-layer2": w * AT, ...}

The trainer sums the components and back-propagates; the names become the curves in the window.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from featdistill_core.config import RunConfig
from featdistill_core.events import PairMaps
from featdistill_core.layers import FeatureHooks, LayerInfo
from featdistill_core.losses import KDLoss, attention_map
from featdistill_core.losses.methods import build_pair_loss


class Distiller(nn.Module):
    def __init__(self, config: RunConfig, teacher: nn.Module, student: nn.Module,
                 teacher_layers: dict[str, LayerInfo], student_layers: dict[str, LayerInfo]):
        super().__init__()
        self.config = config
        self.student = student
        self._teacher = [teacher]          # a list keeps the frozen teacher out of parameters()/state_dict()
        self.pairs = config.pairs
        self.pair_losses = nn.ModuleList(
            build_pair_loss(
                pair.method,
                [student_layers[p].shape for p in pair.student],
                [teacher_layers[p].shape for p in pair.teacher],
                pair.options,
            )
            for pair in self.pairs
        )
        self.kd = KDLoss(config.kd.temperature)
        self.teacher_hooks = FeatureHooks(teacher, [p for pair in self.pairs for p in pair.teacher], config.teacher.arch)
        self.student_hooks = FeatureHooks(student, [p for pair in self.pairs for p in pair.student], config.student.arch)
        self._teacher_probe_maps: dict[int, torch.Tensor] = {}

    @property
    def teacher(self) -> nn.Module:
        return self._teacher[0]

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The student's parameters and every pair's regressor/adapter."""
        return list(self.student.parameters()) + list(self.pair_losses.parameters())

    def needs_teacher(self, stage: str) -> bool:
        if stage == "student" and self.config.kd.weight > 0:
            return True
        return any(self._pair_in_stage(pair, stage) for pair in self.pairs)

    @staticmethod
    def _pair_in_stage(pair, stage: str) -> bool:
        return (pair.stage == "init") == (stage == "init")

    def forward(self, images: torch.Tensor, labels: torch.Tensor, stage: str = "student"):
        """Student logits and the weighted loss components for one batch of ``stage``."""
        teacher_logits = None
        if self.needs_teacher(stage):
            with torch.no_grad():
                teacher_logits = self.teacher(images)
        student_logits = self.student(images)

        losses: dict[str, torch.Tensor] = {}
        if stage == "student":
            if self.config.ce_weight > 0:
                losses["ce"] = self.config.ce_weight * F.cross_entropy(student_logits, labels)
            if self.config.kd.weight > 0:
                losses["kd"] = self.config.kd.weight * self.kd(student_logits, teacher_logits)
        student_feats = self.student_hooks.features
        teacher_feats = self.teacher_hooks.features
        for pair, loss_fn in zip(self.pairs, self.pair_losses):
            if self._pair_in_stage(pair, stage):
                term = loss_fn([student_feats[p] for p in pair.student], [teacher_feats[p] for p in pair.teacher])
                losses[pair.name] = pair.weight * term
        return student_logits, losses

    @torch.no_grad()
    def attention_maps(self, probe_images: torch.Tensor) -> tuple[PairMaps, ...]:
        """Teacher's and student's attention maps on the probe images, one entry per 4-D layer pair.

        Each map is |F|² averaged over channels (the attention-transfer map), the larger of the
        two pooled to the smaller, and scaled to mean 1, so both share one colour scale.
        """
        if not self.pairs:
            return ()
        was_training = self.student.training
        self.student.eval()
        self.student(probe_images)
        self.student.train(was_training)
        if not self._teacher_probe_maps:   # the teacher is frozen: its maps never change
            self.teacher(probe_images)
            for i, pair in enumerate(self.pairs):
                feat = self.teacher_hooks.features[pair.teacher[0]]
                if feat.dim() == 4:
                    self._teacher_probe_maps[i] = attention_map(feat.float())
        maps = []
        shown = set()
        for i, pair in enumerate(self.pairs):
            layers = (pair.teacher[0], pair.student[0])
            if i not in self._teacher_probe_maps or layers in shown:
                continue            # one row per layer pair, even when two methods share it
            shown.add(layers)
            feat = self.student_hooks.features[pair.student[0]]
            if feat.dim() != 4:
                continue
            teacher_map, student_map = _same_size(self._teacher_probe_maps[i], attention_map(feat.float()))
            maps.append(PairMaps(
                name=pair.name,
                teacher_layer=pair.teacher[0],
                student_layer=pair.student[0],
                teacher=_mean_one(teacher_map),
                student=_mean_one(student_map),
            ))
        return tuple(maps)

    def close(self) -> None:
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
