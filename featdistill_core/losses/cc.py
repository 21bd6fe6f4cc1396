"""Correlation congruence (Peng, Jin, Liu, Zhou, Wu, Liu, Li & Zhang, "Correlation Congruence for
Knowledge Distillation", ICCV 2019).

Besides matching each sample (KD, a separate term here), the student should reproduce the
correlations *between* the samples of a batch. Each network's embedding is mapped by a trainable
linear layer to a common width d, L2-normalised, and turned into a B×B correlation matrix with a
Gaussian RBF kernel, approximated by its Taylor series of order P (the paper's generalised kernel)::

    f_i      = W x_i + b,   f̂_i = f_i / ‖f_i‖₂                  one linear head per network
    k(f̂_i, f̂_j) = exp(−γ ‖f̂_i − f̂_j‖²) = exp(−2γ) · exp(2γ f̂_iᵀ f̂_j)
                ≈ Σ_{p=0..P} exp(−2γ) (2γ)^p / p! · (f̂_iᵀ f̂_j)^p
    C_ij     = that sum                                           per network
    L        = 1/B² · ‖C_t − C_s‖²_F

Paper and reference code differ here, and this follows the paper. RepDistiller's
``distiller_zoo/CC.py`` ("code emailed by the original author") computes
``mean_i Σ_d |f_s − f_t|_{i,d} · |f_s − f_t|_{i+1,d}`` on the embeddings: a product of neighbouring
samples' differences that has no kernel and depends on the batch order. The paper's kernel is what the
method is named for; γ = 0.4 and P = 2 are the values of Knowledge-Distillation-Zoo (AberHu,
``kd_losses/cc.py``, "P = 2 order Taylor of Gaussian RBF kernel"). From RepDistiller this takes how the
embeddings are built (``train_student.py``: ``LinearEmbed(dim, feat_dim = 128)`` on the penultimate
features of both networks, both heads trained with the student; the teacher network itself stays
frozen). Because the teacher's head is trained by this loss too, the two heads could in principle
agree on a trivial (constant) embedding; in practice the student's cross-entropy keeps its side
informative, as in the reference setup.

The weight: RepDistiller's β = 0.02 belongs to its different formula and does not carry over;
Knowledge-Distillation-Zoo's CIFAR script uses λ = 100 for this kernel loss (next to a cross-entropy
at weight 1), which is the default here. The math runs in float32 (autocast disabled); the teacher's
features are detached before its head.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .registry import ONE_LAYER, Method, OptionSpec, Taps, register_method


def taylor_rbf_coefficients(gamma: float, order: int) -> list[float]:
    """exp(−2γ) (2γ)^p / p! for p = 0..order."""
    return [math.exp(-2.0 * gamma) * (2.0 * gamma) ** p / math.factorial(p) for p in range(order + 1)]


def correlation_matrix(embedding: Tensor, gamma: float = 0.4, order: int = 2) -> Tensor:
    """(B, d) → (B, B): the order-P Taylor expansion of the Gaussian RBF kernel on L2-normalised rows."""
    unit = F.normalize(embedding.float(), p=2.0, dim=1, eps=1e-12)
    cosine = unit @ unit.t()
    result = torch.zeros_like(cosine)
    power = torch.ones_like(cosine)
    for p, coefficient in enumerate(taylor_rbf_coefficients(gamma, order)):
        if p:
            power = power * cosine
        result = result + coefficient * power
    return result


class CCLoss(nn.Module):
    """Correlation congruence on linear embeddings of both networks (see the module docstring)."""

    def __init__(self, student_dim: int, teacher_dim: int, feat_dim: int = 128, gamma: float = 0.4, order: int = 2):
        super().__init__()
        for name, value in (("student_dim", student_dim), ("teacher_dim", teacher_dim), ("feat_dim", feat_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"CC {name} must be a positive whole number; got {value!r}")
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not math.isfinite(gamma) or gamma <= 0:
            raise ValueError(f"CC gamma must be a positive number; got {gamma!r}")
        if isinstance(order, bool) or not isinstance(order, int) or order < 0:
            raise ValueError(f"CC order must be a whole number ≥ 0; got {order!r}")
        self.embed_student = nn.Linear(student_dim, feat_dim)
        self.embed_teacher = nn.Linear(teacher_dim, feat_dim)
        self.gamma, self.order = float(gamma), order

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        if student.dim() < 2 or teacher.dim() < 2 or student.shape[0] != teacher.shape[0]:
            raise ValueError(
                f"CC needs batches of one size (batch, features...); got {tuple(student.shape)} and "
                f"{tuple(teacher.shape)}"
            )
        with torch.autocast(device_type=student.device.type, enabled=False):
            f_s = self.embed_student(student.float().flatten(1))
            f_t = self.embed_teacher(teacher.detach().float().flatten(1))
            c_s = correlation_matrix(f_s, self.gamma, self.order)
            c_t = correlation_matrix(f_t, self.gamma, self.order)
            return (c_t - c_s).pow(2).mean()

    def extra_repr(self) -> str:
        return f"gamma={self.gamma:g}, order={self.order}"


# ---- the method ---------------------------------------------------------------------------------


def _width(shape) -> int:
    return math.prod(shape)


def _check(student: list, teacher: list, options: dict) -> str:
    (s,), (t,) = student, teacher
    d = options["feat_dim"]
    return f"linear embeddings {_width(s)}→{d} (student) and {_width(t)}→{d} (teacher), trained with the student"


def _build(context) -> nn.Module:
    (s,), (t,) = context.student_shapes, context.teacher_shapes
    o = context.options
    return CCLoss(_width(s), _width(t), feat_dim=o["feat_dim"], gamma=o["gamma"], order=o["order"])


METHOD = register_method(Method(
    key="cc",
    title="Correlation congruence (CC)",
    short_name="CC",
    paper="Peng, Jin, Liu, Zhou, Wu, Liu, Li & Zhang, “Correlation Congruence for Knowledge Distillation”, ICCV 2019",
    formula="C_ij = Σ_{p≤P} e^{−2γ}(2γ)^p/p! · (f̂_iᵀ f̂_j)^p  (Taylor-expanded RBF on linear embeddings),  L = ‖C_t − C_s‖²_F / B²",
    summary=(
        "Each network's embedding is projected to a common width, and a Gaussian kernel (its Taylor "
        "expansion) says how strongly each pair of samples in the batch is correlated. The student "
        "learns the teacher's correlation matrix through two small trained linear heads."
    ),
    options={
        "feat_dim": OptionSpec(128, int, minimum=1, maximum=65536,
                               help="width of the linear embeddings (RepDistiller feat_dim: 128)"),
        "gamma": OptionSpec(0.4, float, minimum=1e-6, maximum=100.0,
                            help="γ of the Gaussian RBF kernel exp(−γ‖x − y‖²) (Knowledge-Distillation-Zoo: 0.4)"),
        "order": OptionSpec(2, int, minimum=0, maximum=20,
                            help="order P of the kernel's Taylor expansion (Knowledge-Distillation-Zoo: 2)"),
    },
    layers=ONE_LAYER,
    taps=Taps.INPUT,
    # RepDistiller's -b 0.02 weights its different formula (see the module docstring);
    # Knowledge-Distillation-Zoo example_train_script.sh: --kd_mode cc --lambda_kd 100 --gamma 0.4 --P_order 2.
    default_weight=100.0,
    check=_check,
    build=_build,
    placement="embedding",
))


__all__ = ["CCLoss", "METHOD", "correlation_matrix", "taylor_rbf_coefficients"]
