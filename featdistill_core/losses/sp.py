"""Similarity-preserving knowledge distillation (Tung & Mori, "Similarity-Preserving Knowledge
Distillation", ICCV 2019).

Inputs that the teacher finds similar should be similar to the student too. Each network's feature
map of the batch gives a B×B matrix of pairwise similarities (a Gram matrix of the flattened maps),
each row L2-normalised; the loss is the squared Frobenius distance between the two, over B²::

    Q        = reshape(F, (B, C·H·W))
    G        = Q Qᵀ,   G[i, :] ← G[i, :] / ‖G[i, :]‖₂          per network
    L        = 1/B² · ‖G_t − G_s‖²_F

Channel counts and spatial sizes may differ (the matrices are B×B), so no adapter is needed. The
loss does not change when the same permutation is applied to both batches (G → P G Pᵀ), nor when the
channels or positions of a map are permuted; it does change when only one side's batch is permuted.

Paper and reference code agree (RepDistiller ``distiller_zoo/SP.py``, "verified by original author",
and mdistiller); this follows both. The CIFAR recipe places it on the output of the last stage
(RepDistiller ``feat[-2]``, mdistiller ``feats[-1]``) with γ = 3000 next to a cross-entropy at
weight 1. The math runs in float32 (autocast disabled); the teacher map is detached.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .registry import ONE_LAYER, Method, Taps, register_method


def similarity_matrix(feat: Tensor) -> Tensor:
    """(B, ...) → (B, B): the Gram matrix of the flattened samples, each row L2-normalised, in float32."""
    flat = feat.float().flatten(1)
    return F.normalize(flat @ flat.t(), p=2.0, dim=1, eps=1e-12)


class SPLoss(nn.Module):
    """‖G_t − G_s‖²_F / B² between row-normalised batch similarity matrices (see the module docstring)."""

    def forward(self, student_feat: Tensor, teacher_feat: Tensor) -> Tensor:
        if student_feat.dim() < 2 or teacher_feat.dim() < 2 or student_feat.shape[0] != teacher_feat.shape[0]:
            raise ValueError(
                f"SP needs batches of one size (batch, features...); got {tuple(student_feat.shape)} and "
                f"{tuple(teacher_feat.shape)}"
            )
        with torch.autocast(device_type=student_feat.device.type, enabled=False):
            g_s = similarity_matrix(student_feat)
            g_t = similarity_matrix(teacher_feat.detach())
            batch = student_feat.shape[0]
            return (g_t - g_s).pow(2).sum() / (batch * batch)


# ---- the method ---------------------------------------------------------------------------------


def _check(student: list, teacher: list, options: dict) -> str:
    return "none"


def _build(context) -> nn.Module:
    return SPLoss()


METHOD = register_method(Method(
    key="sp",
    title="Similarity-preserving KD (SP)",
    short_name="SP",
    paper="Tung & Mori, “Similarity-Preserving Knowledge Distillation”, ICCV 2019",
    formula="G = row_normalise(Q Qᵀ),  Q = reshape(F, (B, C·H·W)),  L = ‖G_t − G_s‖²_F / B²",
    summary=(
        "Each network's feature maps give a batch-by-batch table of how similar the images are to one "
        "another. The student learns the teacher's table, so channel counts and map sizes may differ "
        "and nothing extra is trained."
    ),
    options={},
    layers=ONE_LAYER,
    taps=Taps.OUTPUT,
    # RepDistiller scripts/run_cifar_distill.sh: --distill similarity -b 3000; mdistiller CFG.SP.LOSS.FEAT_WEIGHT = 3000.
    default_weight=3000.0,
    check=_check,
    build=_build,
    placement="last_stage",
))


__all__ = ["METHOD", "SPLoss", "similarity_matrix"]
