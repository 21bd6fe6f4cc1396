"""Attention transfer (Zagoruyko & Komodakis, "Paying More Attention to Attention: Improving the
Performance of Convolutional Neural Networks via Attention Transfer", ICLR 2017).

A layer's spatial attention map is the channel mean of its activations raised to the power p::

    A(F)[h, w] = (1/C) Σ_c |F[c, h, w]|^p                       # attention_map(), shape (B, H, W)
    Q(F)       = vec(A(F)) / ‖vec(A(F))‖₂                        # normalize="l2" (the authors' code)
                 vec(A(F)) / Σ vec(A(F))                         # normalize="l1"
    L          = mean_{batch, positions} (Q(F_s) − Q(F_t))²

Channel counts may differ (the channel mean removes them). When the spatial sizes differ, the larger
feature map is adaptive-average-pooled to the smaller one before the attention maps are taken, as in
RepDistiller. The authors, RepDistiller and mdistiller weight this loss by β = 1000 on CIFAR.
Mean vs sum over channels makes no difference after normalisation; L1 vs L2 does (an L1-normalised
loss is up to H·W times smaller, so β = 1000 does not carry over to ``normalize="l1"``).

The loss math runs in float32 whatever the input dtype; the teacher map is detached.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from .registry import ONE_LAYER, Method, OptionSpec, Taps, register_method, require_maps, size_text

NORMALIZATIONS = ("l1", "l2")
_EPS = 1e-12


def _check_p(p) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) or p < 1:
        raise ValueError(f"attention exponent p must be a number >= 1; got {p!r}")
    return float(p)


def attention_map(feat: Tensor, p: float = 2) -> Tensor:
    """Un-normalised attention map ``mean_c |F|^p`` of a (B, C, H, W) map, as a float32 (B, H, W) tensor."""
    if feat.dim() != 4:
        raise ValueError(f"attention_map needs a 4-D feature map (N,C,H,W); got shape {tuple(feat.shape)}")
    return feat.float().abs().pow(_check_p(p)).mean(dim=1)


def normalized_attention(feat: Tensor, p: float = 2, normalize: str = "l2") -> Tensor:
    """``attention_map`` flattened per sample and divided by its L2 norm or its sum: shape (B, H·W)."""
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of 'l1', 'l2'; got {normalize!r}")
    flat = attention_map(feat, p).flatten(1)
    if normalize == "l2":
        return F.normalize(flat, p=2.0, dim=1, eps=_EPS)
    return flat / flat.sum(dim=1, keepdim=True).clamp_min(_EPS)


def pool_to_common_size(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Adaptive-average-pool whichever of two (B, C, H, W) maps is larger to (min H, min W)."""
    size = (min(a.shape[-2], b.shape[-2]), min(a.shape[-1], b.shape[-1]))
    if tuple(a.shape[-2:]) != size:
        a = F.adaptive_avg_pool2d(a, size)
    if tuple(b.shape[-2:]) != size:
        b = F.adaptive_avg_pool2d(b, size)
    return a, b


class AttentionTransferLoss(nn.Module):
    """Attention transfer loss between one student and one teacher feature map (see module docstring).

    Args:
        p: exponent of the activations (≥ 1; the paper's default and the usual choice is 2).
        normalize: ``"l2"`` (authors' code, RepDistiller, mdistiller) or ``"l1"``.
    """

    def __init__(self, p: float = 2, normalize: str = "l2"):
        super().__init__()
        self.p = _check_p(p)
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of 'l1', 'l2'; got {normalize!r}")
        self.normalize = normalize

    def forward(self, student_feat: Tensor, teacher_feat: Tensor) -> Tensor:
        for side, feat in (("student", student_feat), ("teacher", teacher_feat)):
            if feat.dim() != 4:
                raise ValueError(
                    f"attention transfer needs 4-D feature maps (N,C,H,W); {side} gives {tuple(feat.shape)}"
                )
        if student_feat.shape[0] != teacher_feat.shape[0]:
            raise ValueError(
                f"attention transfer needs the same batch size; student has {student_feat.shape[0]}, "
                f"teacher has {teacher_feat.shape[0]}"
            )
        student, teacher = pool_to_common_size(student_feat.float(), teacher_feat.detach().float())
        q_student = normalized_attention(student, self.p, self.normalize)
        q_teacher = normalized_attention(teacher, self.p, self.normalize)
        return (q_student - q_teacher).pow(2).mean()

    def extra_repr(self) -> str:
        return f"p={self.p:g}, normalize={self.normalize!r}"


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
    return AttentionTransferLoss(p=context.options["p"], normalize=context.options["normalize"])


METHOD = register_method(Method(
    key="at",
    title="Attention transfer",
    short_name="attention transfer",
    paper=(
        "Zagoruyko & Komodakis, “Paying More Attention to Attention: Improving the Performance of "
        "Convolutional Neural Networks via Attention Transfer”, ICLR 2017"
    ),
    formula="A = mean_c |F_c|^p,  Q = vec(A) / ‖vec(A)‖₂,  L = mean (Q_s − Q_t)²",
    summary=(
        "The student learns where the teacher looks: each layer is summarised by a spatial map of how "
        "strongly it activates at each position, and the student's normalised map is pushed towards the "
        "teacher's. Channel counts may differ and nothing extra is trained."
    ),
    options={
        "p": OptionSpec(
            default=2.0, type=float, minimum=1.0, maximum=16.0,
            help="exponent applied to the activations before the channel mean (the paper uses 2)",
        ),
        "normalize": OptionSpec(
            default="l2", type=str, choices=NORMALIZATIONS,
            help=(
                "how each attention map is normalised: 'l2' (the authors' code; the default weight "
                "assumes it) or 'l1' (divide by the sum; gives a loss up to H·W times smaller)"
            ),
        ),
    },
    layers=ONE_LAYER,
    taps=Taps.OUTPUT,
    # β = 1000 of Zagoruyko & Komodakis; RepDistiller (--distill attention -b 1000); mdistiller's AT
    # config (FEAT_WEIGHT: 1000). It assumes normalize="l2".
    default_weight=1000.0,
    check=_check,
    build=_build,
    placement="stages",
))


__all__ = [
    "METHOD",
    "NORMALIZATIONS",
    "AttentionTransferLoss",
    "attention_map",
    "normalized_attention",
    "pool_to_common_size",
]
