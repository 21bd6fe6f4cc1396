"""Probabilistic knowledge transfer (Passalis & Tefas, "Learning Deep Representations with
Probabilistic Knowledge Transfer", ECCV 2018).

The batch's embeddings define, on each network, a conditional probability distribution over the
other samples: how likely sample *j* is picked as a neighbour of sample *i*. PKT makes the student's
distributions match the teacher's with a Kullback-Leibler divergence. The kernel is the cosine
similarity shifted into [0, 1]::

    x̂_i    = x_i / (‖x_i‖₂ + ε)                          ε = 1e-7, per network
    K_ij   = (x̂_iᵀ x̂_j + 1) / 2
    p_j|i  = K_ij / Σ_k K_ik                             teacher: p,  student: q
    L      = 1/B² · Σ_i Σ_j p_j|i · log((p_j|i + ε) / (q_j|i + ε))

Student and teacher may have different widths: each kernel lives within one network, so no adapter
is needed.

Paper and reference code differ in two details; this follows the code (RepDistiller
``distiller_zoo/PKT.py``, taken from the authors' repository ``passalis/probabilistic_kt``), because
the CIFAR-100 weight β = 30000 is calibrated on it:

* the paper's distributions leave out the sample itself (k ≠ i); the code keeps the diagonal
  (K_ii = 1) in each row;
* the paper sums the divergence over all pairs; the code averages over the B² entries (1/B²).

A vector of norm zero gives a zero row (RepDistiller sets NaNs to zero; here the ε in the denominator
already keeps it finite). RepDistiller and mdistiller apply PKT to the penultimate embedding (the
input of the classifier) with weight β = 30000 next to a cross-entropy at weight 1.
The math runs in float32 (autocast disabled); the teacher embedding is detached.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .registry import ONE_LAYER, Method, Taps, register_method, size_text

EPS = 1e-7   # the reference's ε, in the norm and in the logarithm


def conditional_probabilities(x: Tensor) -> Tensor:
    """(B, ...) → (B, B): row-normalised shifted-cosine kernel of the flattened samples, in float32."""
    flat = x.float().flatten(1)
    unit = flat / (flat.norm(dim=1, keepdim=True) + EPS)
    kernel = (unit @ unit.t() + 1.0) / 2.0
    return kernel / kernel.sum(dim=1, keepdim=True)


class PKTLoss(nn.Module):
    """KL divergence between the teacher's and the student's conditional neighbour distributions."""

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        if student.dim() < 2 or teacher.dim() < 2 or student.shape[0] != teacher.shape[0]:
            raise ValueError(
                f"PKT needs batches of one size (batch, features...); got {tuple(student.shape)} and "
                f"{tuple(teacher.shape)}"
            )
        with torch.autocast(device_type=student.device.type, enabled=False):
            q = conditional_probabilities(student)
            p = conditional_probabilities(teacher.detach())
            return (p * torch.log((p + EPS) / (q + EPS))).mean()


# ---- the method ---------------------------------------------------------------------------------


def _check(student: list, teacher: list, options: dict) -> str:
    (s,), (t,) = student, teacher
    if len(s) != 1 or len(t) != 1:
        return f"maps flattened ({size_text(s)} and {size_text(t)})"
    return "none"


def _build(context) -> nn.Module:
    return PKTLoss()


METHOD = register_method(Method(
    key="pkt",
    title="Probabilistic knowledge transfer (PKT)",
    short_name="PKT",
    paper="Passalis & Tefas, “Learning Deep Representations with Probabilistic Knowledge Transfer”, ECCV 2018",
    formula="K_ij = (cos(x_i, x_j) + 1)/2,  p_j|i = K_ij / Σ_k K_ik,  L = 1/B² Σ_ij p_t log(p_t / p_s)",
    summary=(
        "Within a batch, each network's embedding says how similar every sample is to every other "
        "one, as a probability distribution over neighbours. The student learns the teacher's "
        "distributions (a KL divergence), so its widths may differ and nothing extra is trained."
    ),
    options={},
    layers=ONE_LAYER,
    taps=Taps.INPUT,
    # RepDistiller scripts/run_cifar_distill.sh: --distill pkt -b 30000; mdistiller CFG.PKT.LOSS.FEAT_WEIGHT = 30000.
    default_weight=30000.0,
    check=_check,
    build=_build,
    placement="embedding",
))


__all__ = ["METHOD", "PKTLoss", "conditional_probabilities"]
