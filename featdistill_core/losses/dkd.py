"""Decoupled knowledge distillation (Zhao, Cui, Song, Qiu & Liang, "Decoupled Knowledge
Distillation", CVPR 2022).

Classical KD is split into a target-class part and a non-target-class part, weighted separately::

    p = softmax(z / T)
    b = (p_gt, 1 − p_gt)                                   binary target / non-target probabilities
    TCKD = T² · KL(b_t ‖ b_s)                              batch mean
    p̂ = softmax(z / T) over the non-target classes only    (the target logit masked out)
    NCKD = T² · KL(p̂_t ‖ p̂_s)                              batch mean
    L    = min(epoch / warmup, 1) · (α · TCKD + β · NCKD)

As mdistiller implements it: the non-target distribution is taken by subtracting 1000 from the
target logit (after dividing by T) before the softmax, which gives the target class a probability of
exactly 0 in float32; the warm-up factor uses the 1-based epoch of the current stage, so the term is
weighted 1/warmup in epoch 1 and fully from epoch ``warmup`` on. mdistiller's CIFAR-100 setting is
α = 1, β = 8, T = 4, warm-up 20 epochs, with the term at weight 1 next to a cross-entropy at weight 1.

The math runs in float32; the teacher logits are detached.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .registry import NO_LAYERS, Method, OptionSpec, StepContext, Taps, register_method

_MASK = 1000.0   # what mdistiller subtracts from the target logit to drop it from the softmax


def _binary(probabilities: Tensor, target: Tensor) -> Tensor:
    """(B, K) probabilities → (B, 2): the target class's and the sum of all others'."""
    target_p = probabilities.gather(1, target.view(-1, 1))
    return torch.cat([target_p, probabilities.sum(1, keepdim=True) - target_p], dim=1)


class DKDLoss(nn.Module):
    """α·TCKD + β·NCKD (see the module docstring), without the warm-up factor.

    ``forward(student_logits, teacher_logits, labels)``; :meth:`warmup_factor` gives the ramp.
    """

    def __init__(self, alpha: float = 1.0, beta: float = 8.0, temperature: float = 4.0, warmup: int = 20):
        super().__init__()
        for name, value in (("alpha", alpha), ("beta", beta)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"DKD {name} must be a number ≥ 0; got {value!r}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"DKD temperature must be a positive number; got {temperature!r}")
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ValueError(f"DKD warmup must be a whole number of epochs ≥ 0; got {warmup!r}")
        self.alpha, self.beta, self.temperature, self.warmup = float(alpha), float(beta), float(temperature), warmup

    def warmup_factor(self, epoch: int) -> float:
        """min(epoch / warmup, 1) for the 1-based ``epoch`` (1 when warmup is 0)."""
        return 1.0 if self.warmup == 0 else min(epoch / self.warmup, 1.0)

    def forward(self, student_logits: Tensor, teacher_logits: Tensor, labels: Tensor) -> Tensor:
        if student_logits.dim() != 2 or student_logits.shape != teacher_logits.shape:
            raise ValueError(
                f"DKD needs student and teacher logits of one shape (batch, classes); got "
                f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}"
            )
        t = self.temperature
        z_s = student_logits.float() / t
        z_t = teacher_logits.detach().float() / t
        target = labels.long()
        batch = z_s.shape[0]
        b_s = _binary(F.softmax(z_s, dim=1), target)
        b_t = _binary(F.softmax(z_t, dim=1), target)
        tckd = F.kl_div(torch.log(b_s), b_t, reduction="sum") * (t * t) / batch
        mask = F.one_hot(target, z_s.shape[1]).to(z_s.dtype) * _MASK
        nckd = F.kl_div(F.log_softmax(z_s - mask, dim=1), F.softmax(z_t - mask, dim=1), reduction="sum") * (t * t) / batch
        return self.alpha * tckd + self.beta * nckd

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:g}, beta={self.beta:g}, temperature={self.temperature:g}, warmup={self.warmup}"


class _DKDTerm(DKDLoss):
    """DKD as a run's term: reads the labels and the epoch from the step."""

    def forward(self, step: StepContext) -> Tensor:  # type: ignore[override]
        loss = super().forward(step.student_logits, step.teacher_logits, step.labels)
        return self.warmup_factor(step.progress.epoch) * loss


# ---- the method ---------------------------------------------------------------------------------


def _check(student: list, teacher: list, options: dict) -> str:
    return "none"


def _build(context) -> nn.Module:
    o = context.options
    return _DKDTerm(alpha=o["alpha"], beta=o["beta"], temperature=o["temperature"], warmup=o["warmup"])


METHOD = register_method(Method(
    key="dkd",
    title="Decoupled KD (DKD)",
    short_name="DKD",
    paper="Zhao, Cui, Song, Qiu & Liang, “Decoupled Knowledge Distillation”, CVPR 2022",
    formula="L = min(epoch/warmup, 1) · (α · TCKD + β · NCKD),  TCKD/NCKD = T²·KL on target-vs-rest / non-target classes",
    summary=(
        "Logit distillation split in two: how confident the teacher is in the true class (TCKD), and how "
        "it ranks the other classes (NCKD), which classical KD under-weights. Weighting the non-target "
        "part more (β = 8) and ramping the term up over the first epochs is the CIFAR recipe."
    ),
    options={
        "alpha": OptionSpec(1.0, float, minimum=0.0, maximum=1e4, help="weight of the target-class part (TCKD)"),
        "beta": OptionSpec(8.0, float, minimum=0.0, maximum=1e4, help="weight of the non-target part (NCKD); 8 on CIFAR-100"),
        "temperature": OptionSpec(4.0, float, minimum=1e-3, maximum=1e3, help="softening temperature T"),
        "warmup": OptionSpec(20, int, minimum=0, maximum=10**6,
                             help="epochs over which the term's weight ramps up linearly (mdistiller: 20)"),
    },
    layers=NO_LAYERS,
    taps=Taps.LOGITS,
    reads="context",
    # mdistiller configs/cifar100/dkd/*.yaml: the DKD term at weight 1 (α, β inside), CE at weight 1.
    default_weight=1.0,
    check=_check,
    build=_build,
    placement="logits",
))


__all__ = ["DKDLoss", "METHOD"]
