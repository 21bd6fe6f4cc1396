"""Relational knowledge distillation (Park, Kim, Lu & Cho, "Relational Knowledge Distillation",
CVPR 2019).

Not the embeddings themselves but their relations within the batch are transferred: the distances
between pairs of samples and the angles formed by triples. Both potentials are compared with the
Huber loss (smooth L1, δ = 1)::

    ψ_D(i, j)    = ‖x_i − x_j‖₂ / μ,    μ = mean of ‖x_i − x_j‖₂ over the pairs i ≠ j     (per network)
    e_ij         = (x_i − x_j) / ‖x_i − x_j‖₂          (0 when x_i = x_j)
    ψ_A(i, j, k) = e_ij · e_kj                          the cosine of the angle at x_j
    L_D = mean_{i,j} huber(ψ_D^s(i, j) − ψ_D^t(i, j))           over all B² pairs
    L_A = mean_{i,j,k} huber(ψ_A^s(i, j, k) − ψ_A^t(i, j, k))   over all B³ triples
    L   = w_D · L_D + w_A · L_A,     huber(d) = d²/2 if |d| < 1 else |d| − 1/2

Dividing by the mean distance makes the distance potential invariant to the scale of each
embedding, and angles are scale-invariant already: L does not change when either network's
embedding is multiplied by a positive constant (or shifted). Widths may differ.

Paper and reference code: the paper sums the Huber terms over the pairs i ≠ j and the triples of
distinct samples; RepDistiller (``distiller_zoo/RKD.py``) and mdistiller take ``smooth_l1_loss``'s
mean over all B² pairs and B³ triples, the degenerate ones included (their potentials are 0 on both
sides, so they only scale the mean). This follows the code, on which the CIFAR-100 weights
w_D = 25, w_A = 50 (term weight 1) are calibrated. μ is the mean over the off-diagonal distances, as
the code's mean over the positive entries (the same unless two samples coincide).

RepDistiller and mdistiller apply RKD to the penultimate embedding (the input of the classifier).
The math runs in float32 (autocast disabled); the teacher embedding is detached.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .registry import ONE_LAYER, Method, OptionSpec, Taps, register_method, size_text


def pairwise_distances(x: Tensor) -> Tensor:
    """(B, D) → (B, B) Euclidean distances; the diagonal is exactly 0 and carries no gradient."""
    diff = x.unsqueeze(1) - x.unsqueeze(0)
    squared = diff.pow(2).sum(-1)
    eye = torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
    # clamp keeps sqrt's gradient finite where two samples coincide; the diagonal is masked out
    return torch.where(eye, torch.zeros_like(squared), squared.clamp_min(1e-12).sqrt())


def distance_potential(x: Tensor) -> Tensor:
    """ψ_D: pairwise distances divided by their mean over the pairs i ≠ j."""
    d = pairwise_distances(x)
    b = x.shape[0]
    mean = d.sum() / max(b * (b - 1), 1)
    return d / mean.clamp_min(1e-12)


def angle_potential(x: Tensor) -> Tensor:
    """ψ_A: (B, B, B) with entry [j, i, k] = cos of the angle at x_j between x_i and x_k."""
    e = F.normalize(x.unsqueeze(0) - x.unsqueeze(1), p=2, dim=2)   # e[j, i] = unit(x_i − x_j)
    return torch.bmm(e, e.transpose(1, 2))


class RKDLoss(nn.Module):
    """w_D · distance loss + w_A · angle loss on the batch's embeddings (see the module docstring)."""

    def __init__(self, distance_weight: float = 25.0, angle_weight: float = 50.0):
        super().__init__()
        for name, value in (("distance_weight", distance_weight), ("angle_weight", angle_weight)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"RKD {name} must be a number ≥ 0; got {value!r}")
        self.distance_weight, self.angle_weight = float(distance_weight), float(angle_weight)

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        if student.dim() < 2 or teacher.dim() < 2 or student.shape[0] != teacher.shape[0]:
            raise ValueError(
                f"RKD needs batches of one size (batch, features...); got {tuple(student.shape)} and "
                f"{tuple(teacher.shape)}"
            )
        with torch.autocast(device_type=student.device.type, enabled=False):
            s = student.float().flatten(1)
            with torch.no_grad():
                t = teacher.detach().float().flatten(1)
                t_distance, t_angle = distance_potential(t), angle_potential(t)
            loss_d = F.smooth_l1_loss(distance_potential(s), t_distance)
            loss_a = F.smooth_l1_loss(angle_potential(s), t_angle)
            return self.distance_weight * loss_d + self.angle_weight * loss_a

    def extra_repr(self) -> str:
        return f"distance_weight={self.distance_weight:g}, angle_weight={self.angle_weight:g}"


# ---- the method ---------------------------------------------------------------------------------


def _check(student: list, teacher: list, options: dict) -> str:
    (s,), (t,) = student, teacher
    if len(s) != 1 or len(t) != 1:
        return f"maps flattened ({size_text(s)} and {size_text(t)})"
    return "none"


def _build(context) -> nn.Module:
    o = context.options
    return RKDLoss(distance_weight=o["distance_weight"], angle_weight=o["angle_weight"])


METHOD = register_method(Method(
    key="rkd",
    title="Relational KD (RKD)",
    short_name="RKD",
    paper="Park, Kim, Lu & Cho, “Relational Knowledge Distillation”, CVPR 2019",
    formula="L = w_D · huber(ψ_D^s, ψ_D^t) + w_A · huber(ψ_A^s, ψ_A^t),  ψ_D = ‖x_i − x_j‖/μ,  ψ_A = cos∠(x_i, x_j, x_k)",
    summary=(
        "The student copies how the teacher arranges a batch: the distances between pairs of samples "
        "(relative to their mean) and the angles formed by triples. It is invariant to the scale of "
        "either embedding, widths may differ, and nothing extra is trained."
    ),
    options={
        "distance_weight": OptionSpec(25.0, float, minimum=0.0, maximum=1e6,
                                      help="weight w_D of the distance loss (RepDistiller/mdistiller: 25)"),
        "angle_weight": OptionSpec(50.0, float, minimum=0.0, maximum=1e6,
                                   help="weight w_A of the angle loss (RepDistiller/mdistiller: 50)"),
    },
    layers=ONE_LAYER,
    taps=Taps.INPUT,
    # RepDistiller scripts/run_cifar_distill.sh: --distill rkd -b 1 (w_d = 25, w_a = 50 inside);
    # mdistiller CFG.RKD: FEAT_WEIGHT 1, DISTANCE_WEIGHT 25, ANGLE_WEIGHT 50.
    default_weight=1.0,
    check=_check,
    build=_build,
    placement="embedding",
))


__all__ = ["METHOD", "RKDLoss", "angle_potential", "distance_potential", "pairwise_distances"]
