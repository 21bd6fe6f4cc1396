"""Logit distillation (Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", 2015).

The student matches the teacher's temperature-softened class distribution::

    p_t = softmax(z_t / T),  p_s = softmax(z_s / T)
    L   = T² · mean_batch Σ_classes p_t · (log p_t − log p_s)      # KL(p_t ‖ p_s) · T²

The T² factor keeps the gradient scale of the soft term roughly independent of T (Hinton et al. §2).
T = 4 is the CIFAR-100 setting of RepDistiller and mdistiller.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from .registry import NO_LAYERS, Method, OptionSpec, Taps, register_method


class KDLoss(nn.Module):
    """KL(softmax(t/T) ‖ softmax(s/T)) · T², summed over classes and averaged over the batch.

    ``forward(student_logits, teacher_logits)`` takes two (B, K) tensors. The math runs in float32
    whatever the input dtype (also under autocast). The teacher logits are detached: no gradient ever
    reaches the teacher.
    """

    def __init__(self, temperature: float = 4.0):
        super().__init__()
        if (
            isinstance(temperature, bool)
            or not isinstance(temperature, (int, float))
            or not math.isfinite(temperature)
            or temperature <= 0
        ):
            raise ValueError(f"KD temperature must be a positive number; got {temperature!r}")
        self.temperature = float(temperature)

    def forward(self, student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
        if student_logits.dim() != 2 or teacher_logits.dim() != 2:
            raise ValueError(
                "KD needs logits of shape (batch, classes); got student "
                f"{tuple(student_logits.shape)} and teacher {tuple(teacher_logits.shape)}"
            )
        if student_logits.shape != teacher_logits.shape:
            raise ValueError(
                "KD needs student and teacher logits of the same shape; got student "
                f"{tuple(student_logits.shape)} and teacher {tuple(teacher_logits.shape)}"
            )
        t = self.temperature
        log_p_student = F.log_softmax(student_logits.float() / t, dim=1)
        log_p_teacher = F.log_softmax(teacher_logits.detach().float() / t, dim=1)
        kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
        return kl * (t * t)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature:g}"


# ---- the method ---------------------------------------------------------------------------------


def _check(student: list, teacher: list, options: dict) -> str:
    return "none"


def _build(context) -> nn.Module:
    return KDLoss(context.options["temperature"])


METHOD = register_method(Method(
    key="kd",
    title="Logit KD",
    short_name="logit KD",
    paper="Hinton, Vinyals & Dean, “Distilling the Knowledge in a Neural Network”, NIPS Deep Learning Workshop 2015",
    formula="L = T² · KL(softmax(z_t/T) ‖ softmax(z_s/T)),  batch mean",
    summary=(
        "The student matches the teacher's softened class probabilities, which say how alike the teacher "
        "finds the classes. It needs no layers, only the two networks' logits. The run file's [kd] table "
        "is a shorthand for one such term."
    ),
    options={
        "temperature": OptionSpec(
            default=4.0, type=float, minimum=1e-3, maximum=1e3,
            help="softening temperature T (4 in the CIFAR recipes of RepDistiller and mdistiller)",
        ),
    },
    layers=NO_LAYERS,
    taps=Taps.LOGITS,
    # RepDistiller (--distill kd -r 0.1 -a 0.9) and mdistiller's KD config (KD_WEIGHT 0.9, CE_WEIGHT 0.1).
    default_weight=0.9,
    check=_check,
    build=_build,
    placement="logits",
))


__all__ = ["KDLoss", "METHOD"]
