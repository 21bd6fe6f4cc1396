"""Neuron selectivity transfer (Huang & Wang, "Like What You Like: Knowledge Distill via Neuron
Selectivity Transfer", arXiv:1707.01219, 2017).

Each channel of a feature map is one sample of the layer's "selectivity" distribution: its spatial
activation pattern, flattened and L2-normalised. NST makes the student's set of channel patterns
match the teacher's by minimising the squared maximum mean discrepancy between the two sets under a
polynomial kernel of degree 2 (the paper's best kernel, and the one RepDistiller implements)::

    f_i   = vec(F[i]) / ‖vec(F[i])‖₂          i = 1..C,  vec over the H·W positions
    k(x, y) = (xᵀy)²
    L     = mean_{i,j} k(f_t,i, f_t,j) + mean_{i,j} k(f_s,i, f_s,j) − 2 mean_{i,j} k(f_s,i, f_t,j)

The means run over the batch and over every pair of channels (student and teacher may have
different channel counts: no adapter is needed). The first term does not depend on the student; it
is kept (detached) so the loss is the MMD itself and is ≥ 0, as RepDistiller's ``full_loss``.

Spatial sizes: when they differ, the larger map is adaptive-average-pooled to the smaller (min H,
min W). RepDistiller pools to a square of the smaller height, which is the same for the square maps
of CIFAR networks; pooling each dimension separately also handles non-square maps.

RepDistiller's CIFAR-100 recipe weights this loss by β = 50 on the outputs of the intermediate stages.
The math runs in float32 (autocast disabled); the teacher map is detached.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import pool_to_common_size
from .registry import ONE_LAYER, Method, Taps, register_method, require_maps, size_text


def channel_patterns(feat: Tensor) -> Tensor:
    """(B, C, H, W) → (B, C, H·W): each channel's spatial pattern, L2-normalised, in float32."""
    return F.normalize(feat.float().flatten(2), p=2.0, dim=2, eps=1e-12)


def polynomial_kernel_mean(a: Tensor, b: Tensor) -> Tensor:
    """mean over batch and channel pairs of (aᵢᵀ b_j)² for (B, C_a, D) and (B, C_b, D)."""
    return torch.bmm(a, b.transpose(1, 2)).pow(2).mean()


class NSTLoss(nn.Module):
    """Squared MMD with a degree-2 polynomial kernel between normalised channel patterns (see module)."""

    def forward(self, student_feat: Tensor, teacher_feat: Tensor) -> Tensor:
        for side, feat in (("student", student_feat), ("teacher", teacher_feat)):
            if feat.dim() != 4:
                raise ValueError(f"NST needs 4-D feature maps (N,C,H,W); {side} gives {tuple(feat.shape)}")
        if student_feat.shape[0] != teacher_feat.shape[0]:
            raise ValueError(f"NST needs the same batch size; got {student_feat.shape[0]} and {teacher_feat.shape[0]}")
        with torch.autocast(device_type=student_feat.device.type, enabled=False):
            student, teacher = pool_to_common_size(student_feat.float(), teacher_feat.detach().float())
            s, t = channel_patterns(student), channel_patterns(teacher)
            return polynomial_kernel_mean(t, t).detach() + polynomial_kernel_mean(s, s) - 2 * polynomial_kernel_mean(s, t)


# ---- the method ---------------------------------------------------------------------------------


def _check(student: list, teacher: list, options: dict) -> str:
    require_maps(METHOD, student, "student")
    require_maps(METHOD, teacher, "teacher")
    (s,), (t,) = student, teacher
    common = (min(s[1], t[1]), min(s[2], t[2]))
    parts = [
        f"{side} map pooled {size_text(shape[1:])}→{size_text(common)}"
        for side, shape in (("student", s), ("teacher", t))
        if shape[1:] != common
    ]
    return "; ".join(parts) or "none"


def _build(context) -> nn.Module:
    return NSTLoss()


METHOD = register_method(Method(
    key="nst",
    title="Neuron selectivity transfer (NST)",
    short_name="NST",
    paper="Huang & Wang, “Like What You Like: Knowledge Distill via Neuron Selectivity Transfer”, arXiv:1707.01219, 2017",
    formula="f = vec(F_c)/‖vec(F_c)‖,  k(x,y) = (xᵀy)²,  L = MMD²_k({f_s}, {f_t})",
    summary=(
        "Each channel's spatial activation pattern is treated as a sample, and the student's set of "
        "patterns is made to match the teacher's distribution of patterns (a maximum mean discrepancy "
        "with a polynomial kernel). Channel counts may differ and nothing extra is trained."
    ),
    options={},
    layers=ONE_LAYER,
    taps=Taps.OUTPUT,
    # RepDistiller scripts/run_cifar_distill.sh: --distill nst -b 50.
    default_weight=50.0,
    check=_check,
    build=_build,
    placement="stages",
))


__all__ = ["METHOD", "NSTLoss", "channel_patterns", "polynomial_kernel_mean"]
