"""Variational information distillation (Ahn, Hu, Damianou, Lawrence & Dai, "Variational Information
Distillation for Knowledge Transfer", CVPR 2019).

VID maximises a variational lower bound on the mutual information between a teacher feature map t
and the student's map s. The bound's variational distribution is a Gaussian whose mean is regressed
from the student's map and whose variance is learned, one value per teacher channel; maximising the
bound is minimising the Gaussian negative log-likelihood of the teacher's map::

    μ(s)   = conv1×1(ReLU(conv1×1(ReLU(conv1×1(s)))))        C_s → C_t → C_t → C_t, no biases
    σ²_c   = softplus(α_c) + ε = log(1 + exp(α_c)) + ε        one learned α per teacher channel c
    L      = mean_{n,c,h,w} ½ · ( (t − μ(s))² / σ²_c + log σ²_c )

(the paper's −log q(t|s) up to its constant ½ log 2π, averaged instead of summed over the elements,
as the code does). α starts where σ² = 5 (``init_variance``): α₀ = log(exp(5 − ε) − 1).

This follows the reference code (RepDistiller ``distiller_zoo/VID.py`` and mdistiller ``VID.py``,
both from the authors' ``ssahn0215/variational-information-distillation``): the regressor's hidden
width is the teacher's channel count (RepDistiller builds ``VIDLoss(s, t, t)``), there is no batch
norm in μ, ε = 1e-5. When the spatial sizes differ the larger map is adaptive-average-pooled to the
smaller one (RepDistiller pools to a square of the smaller height, which is the same for the square
maps of CIFAR networks; pooling each dimension separately also handles non-square maps).

The CIFAR-100 recipe applies one VID term to each intermediate stage output (RepDistiller
``feat[1:-1]``, mdistiller ``feats[1:]``: the outputs of layer1..layer3 of a CIFAR ResNet) and sums
them with weight 1 next to a cross-entropy at weight 1; here that is one term per stage, weight 1
each. The loss can be negative (log σ² < 0 once the regressor predicts well). The math runs in
float32 (autocast disabled); the teacher map is detached.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import pool_to_common_size
from .registry import ONE_LAYER, Method, OptionSpec, Taps, register_method, require_maps, size_text

EPS = 1e-5   # added to the variance (the reference's ε)


def inverse_softplus(value: float) -> float:
    """α with softplus(α) = value (value > 0)."""
    return value + math.log(-math.expm1(-value))   # log(exp(v) − 1), stable for large v


class VIDLoss(nn.Module):
    """Gaussian negative log-likelihood of the teacher map under a regressed mean and learned variance."""

    def __init__(self, student_channels: int, teacher_channels: int, hidden_channels: int | None = None,
                 init_variance: float = 5.0):
        super().__init__()
        for name, value in (("student_channels", student_channels), ("teacher_channels", teacher_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"VID {name} must be a positive whole number; got {value!r}")
        hidden = teacher_channels if hidden_channels is None else hidden_channels
        if (isinstance(init_variance, bool) or not isinstance(init_variance, (int, float))
                or not math.isfinite(init_variance) or init_variance <= EPS):
            raise ValueError(f"VID init_variance must be a number above {EPS:g}; got {init_variance!r}")
        self.regressor = nn.Sequential(
            nn.Conv2d(student_channels, hidden, kernel_size=1, bias=False),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, kernel_size=1, bias=False),
            nn.ReLU(),
            nn.Conv2d(hidden, teacher_channels, kernel_size=1, bias=False),
        )
        self.log_scale = nn.Parameter(torch.full((teacher_channels,), inverse_softplus(init_variance - EPS)))
        self.init_variance = float(init_variance)

    def variance(self) -> Tensor:
        """σ²_c per teacher channel, (C_t,)."""
        return F.softplus(self.log_scale.float()) + EPS

    def forward(self, student_feat: Tensor, teacher_feat: Tensor) -> Tensor:
        for side, feat in (("student", student_feat), ("teacher", teacher_feat)):
            if feat.dim() != 4:
                raise ValueError(f"VID needs 4-D feature maps (N,C,H,W); {side} gives {tuple(feat.shape)}")
        if student_feat.shape[0] != teacher_feat.shape[0]:
            raise ValueError(f"VID needs the same batch size; got {student_feat.shape[0]} and {teacher_feat.shape[0]}")
        with torch.autocast(device_type=student_feat.device.type, enabled=False):
            student, teacher = pool_to_common_size(student_feat.float(), teacher_feat.detach().float())
            mean = self.regressor(student)
            var = self.variance().view(1, -1, 1, 1)
            return (0.5 * ((mean - teacher).pow(2) / var + torch.log(var))).mean()

    def extra_repr(self) -> str:
        return f"init_variance={self.init_variance:g}"


# ---- the method ---------------------------------------------------------------------------------


def _check(student: list, teacher: list, options: dict) -> str:
    require_maps(METHOD, student, "student")
    require_maps(METHOD, teacher, "teacher")
    (s,), (t,) = student, teacher
    parts = [f"regressor 1×1 conv {s[0]}→{t[0]}→{t[0]}→{t[0]} with a learned variance per channel"]
    common = (min(s[1], t[1]), min(s[2], t[2]))
    parts += [
        f"{side} map pooled {size_text(shape[1:])}→{size_text(common)}"
        for side, shape in (("student", s), ("teacher", t))
        if shape[1:] != common
    ]
    return "; ".join(parts)


def _build(context) -> nn.Module:
    (s,), (t,) = context.student_shapes, context.teacher_shapes
    return VIDLoss(s[0], t[0], init_variance=context.options["init_variance"])


METHOD = register_method(Method(
    key="vid",
    title="Variational information distillation (VID)",
    short_name="VID",
    paper="Ahn, Hu, Damianou, Lawrence & Dai, “Variational Information Distillation for Knowledge Transfer”, CVPR 2019",
    formula="L = mean ½((t − μ(s))²/σ²_c + log σ²_c),  μ = 1×1-conv regressor,  σ²_c = softplus(α_c) + ε",
    summary=(
        "The student's feature map must predict the teacher's, through a small trained regressor, "
        "under a Gaussian with a learned uncertainty per teacher channel. Channels the student cannot "
        "predict get a large variance and count less, which maximises a bound on the shared information."
    ),
    options={
        "init_variance": OptionSpec(5.0, float, minimum=1e-3, maximum=1e6,
                                    help="initial variance σ² of every teacher channel (RepDistiller/mdistiller: 5)"),
    },
    layers=ONE_LAYER,
    taps=Taps.OUTPUT,
    # RepDistiller scripts/run_cifar_distill.sh: --distill vid -b 1 (summed over feat[1:-1]);
    # mdistiller CFG.VID.LOSS.FEAT_WEIGHT = 1.0, INIT_PRED_VAR = 5.0.
    default_weight=1.0,
    check=_check,
    build=_build,
    placement="stages",
))


__all__ = ["METHOD", "VIDLoss", "inverse_softplus"]
