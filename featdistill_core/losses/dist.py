"""DIST (Huang, You, Wang, Qian & Xu, "Knowledge Distillation from A Stronger Teacher", NeurIPS 2022).

Instead of matching the teacher's softened predictions exactly (KL divergence), DIST asks the student
to preserve their *relations*, measured by Pearson correlation, which ignores the scale and shift a
much stronger teacher's predictions may have::

    Y   = softmax(Z / τ)                                (B × K, rows: samples, columns: classes)
    ρ(u, v) = (u − ū)·(v − v̄) / (‖u − ū‖ ‖v − v̄‖ + ε)  Pearson correlation, ε = 1e-8
    L_inter = 1 − (1/B) Σ_i ρ(Y_s[i, :], Y_t[i, :])    each sample's prediction over the classes
    L_intra = 1 − (1/K) Σ_k ρ(Y_s[:, k], Y_t[:, k])    each class's scores across the batch
    L       = τ² (β · L_inter + γ · L_intra)

This is the authors' code (``DIST`` in hunto/image_classification_sota ``lib/models/losses/dist_kd.py``,
the file the DIST_KD README points to): ε sits in the denominator of the correlation, and both terms
are scaled by τ² like classical KD. The paper writes the same relations; the code is followed where
the paper leaves ε and the τ² factor implicit. Defaults: β = γ = τ = 1 (ImageNet). On CIFAR-100 the
authors run ``--kd dist_t4`` (τ = 4), which is this method's default, with the term weighted as the
DIST_KD CIFAR recipe is understood to (see the registration). With a batch of one, L_intra is the constant 1 (a
column of one value has no correlation) and only L_inter trains the student.

The math runs in float32; the teacher logits are detached.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .registry import NO_LAYERS, Method, OptionSpec, Taps, register_method

EPS = 1e-8


def pearson_rows(a: Tensor, b: Tensor, eps: float = EPS) -> Tensor:
    """Pearson correlation of each row of ``a`` with the same row of ``b`` (2-D, one value per row)."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def inter_class_relation(y_student: Tensor, y_teacher: Tensor) -> Tensor:
    """1 − mean over samples of the correlation of their class scores."""
    return 1 - pearson_rows(y_student, y_teacher).mean()


def intra_class_relation(y_student: Tensor, y_teacher: Tensor) -> Tensor:
    """1 − mean over classes of the correlation of their scores across the batch."""
    return 1 - pearson_rows(y_student.t(), y_teacher.t()).mean()


def _number(value, name: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (positive and value == 0):
        raise ValueError(f"DIST {name} must be a {'positive' if positive else 'non-negative'} number; got {value!r}")
    return float(value)


class DISTLoss(nn.Module):
    """τ² (β · inter-class + γ · intra-class relation loss) on softened predictions (see module docstring)."""

    def __init__(self, beta: float = 1.0, gamma: float = 1.0, tau: float = 1.0):
        super().__init__()
        self.beta = _number(beta, "beta")
        self.gamma = _number(gamma, "gamma")
        self.tau = _number(tau, "tau", positive=True)

    def forward(self, student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
        if student_logits.dim() != 2 or student_logits.shape != teacher_logits.shape:
            raise ValueError(
                f"DIST needs student and teacher logits of one shape (batch, classes); got "
                f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}"
            )
        with torch.autocast(device_type=student_logits.device.type, enabled=False):
            y_s = F.softmax(student_logits.float() / self.tau, dim=1)
            y_t = F.softmax(teacher_logits.detach().float() / self.tau, dim=1)
            inter = inter_class_relation(y_s, y_t)
            intra = intra_class_relation(y_s, y_t)
            return self.tau ** 2 * (self.beta * inter + self.gamma * intra)

    def extra_repr(self) -> str:
        return f"beta={self.beta:g}, gamma={self.gamma:g}, tau={self.tau:g}"


# ---- the method ---------------------------------------------------------------------------------


def _check(student: list, teacher: list, options: dict) -> str:
    return "none"


def _build(context) -> nn.Module:
    o = context.options
    return DISTLoss(beta=o["beta"], gamma=o["gamma"], tau=o["tau"])


METHOD = register_method(Method(
    key="dist",
    title="DIST (relation distillation from a stronger teacher)",
    short_name="DIST",
    paper="Huang, You, Wang, Qian & Xu, “Knowledge Distillation from A Stronger Teacher”, NeurIPS 2022",
    formula="Y = softmax(Z/τ),  L = τ² (β (1 − mean_i ρ(Y_s[i,:], Y_t[i,:])) + γ (1 − mean_k ρ(Y_s[:,k], Y_t[:,k]))),  ρ = Pearson",
    summary=(
        "Logit distillation that matches how the teacher's predictions are related rather than their exact "
        "values: per sample across classes, and per class across the batch, by Pearson correlation. It "
        "tolerates the gap to a much stronger teacher better than KL-based KD."
    ),
    options={
        "beta": OptionSpec(1.0, float, minimum=0.0, maximum=1e4, help="weight β of the inter-class (per-sample) relation"),
        "gamma": OptionSpec(1.0, float, minimum=0.0, maximum=1e4, help="weight γ of the intra-class (per-class) relation"),
        "tau": OptionSpec(4.0, float, minimum=1e-3, maximum=1e3,
                          help="softening temperature τ (4 on CIFAR-100: the authors' --kd dist_t4; 1 on ImageNet)"),
    },
    layers=NO_LAYERS,
    taps=Taps.LOGITS,
    # DIST_KD CIFAR-100 recipe (README: classification/configs/strategies/distill/dist_cifar.yaml, used
    # with --kd dist_t4, i.e. τ = 4 and β = γ = 1 inside the loss). Weight 2 next to a cross-entropy at
    # weight 1 is β = γ = 2, the CIFAR-100 setting as recalled from the paper: neither that yaml nor the
    # paper's text was readable when this was ported, so this weight is unverified (τ = 4 is verified).
    default_weight=2.0,
    check=_check,
    build=_build,
    placement="logits",
))


__all__ = ["DISTLoss", "METHOD", "inter_class_relation", "intra_class_relation", "pearson_rows"]
