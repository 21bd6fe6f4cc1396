"""Feature (hint) distillation: FitNets (Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015).

A student layer (the "guided" layer) is trained to predict a teacher layer (the "hint") through a
small trained regressor r::

    L = mean (r(F_s) − F_t)²          # mean over batch, channels and positions (or features)

The regressor
-------------
``regressor="auto"``          identity when the channel counts match, else a 1×1 conv (Linear for flat features).
``regressor="conv"``          always a 1×1 conv (Linear for flat features).
``regressor="conv_bn_relu"``  1×1 conv + BatchNorm + ReLU (Linear + BatchNorm1d + ReLU for flat features):
                              the ``ConvReg`` of RepDistiller and mdistiller, whose CIFAR-100 recipe
                              weights this loss by β = 100.

Different spatial sizes
-----------------------
When ``student_size`` and ``teacher_size`` differ, the student map is first brought to the teacher's
size by a parameter-free resize (``ResizeTo``): **adaptive average pooling** when the student map is at
least as large in both dimensions, **bilinear interpolation** (``align_corners=False``) otherwise. This
works for any size ratio, unlike RepDistiller's strided / transposed conv which only handles 2× steps.
Pooling and bilinear interpolation are linear per channel with weights summing to one, so they commute
with a 1×1 conv: resizing first costs the same parameters and fewer FLOPs.

The loss math runs in float32 whatever the input dtype; the teacher features are detached.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from .registry import ONE_LAYER, Method, OptionSpec, Refusal, Taps, register_method, size_text

REGRESSOR_KINDS = ("auto", "conv", "conv_bn_relu")


def resize_mode(source_size: Sequence[int], target_size: Sequence[int]) -> str:
    """How a (H, W) map is brought to another size: ``"none"``, ``"pool"`` or ``"bilinear"``."""
    source, target = tuple(source_size), tuple(target_size)
    if source == target:
        return "none"
    if source[0] >= target[0] and source[1] >= target[1]:
        return "pool"
    return "bilinear"


def needs_projection(student_channels: int, teacher_channels: int, regressor: str) -> bool:
    """Whether the regressor has a trained layer (only ``"auto"`` with equal channels has none)."""
    return regressor != "auto" or student_channels != teacher_channels


class ResizeTo(nn.Module):
    """Brings a (B, C, H, W) map to a fixed (H, W): adaptive average pooling when the map is at least
    as large in both dimensions, bilinear interpolation (``align_corners=False``) otherwise. No parameters."""

    def __init__(self, size: Sequence[int]):
        super().__init__()
        self.size = (int(size[0]), int(size[1]))

    def forward(self, x: Tensor) -> Tensor:
        mode = resize_mode(x.shape[-2:], self.size)
        if mode == "none":
            return x
        if mode == "pool":
            return F.adaptive_avg_pool2d(x, self.size)
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)

    def extra_repr(self) -> str:
        return f"size={self.size}"


def build_regressor(
    student_channels: int,
    teacher_channels: int,
    regressor: str = "auto",
    *,
    student_size: Optional[Sequence[int]] = None,
    teacher_size: Optional[Sequence[int]] = None,
    flat: bool = False,
) -> nn.Module:
    """The module that maps student features onto the teacher's shape (see the module docstring)."""
    layers: list[nn.Module] = []
    if student_size is not None and teacher_size is not None:
        if resize_mode(student_size, teacher_size) != "none":
            layers.append(ResizeTo(teacher_size))
    if needs_projection(student_channels, teacher_channels, regressor):
        with_bn = regressor == "conv_bn_relu"
        if flat:
            layers.append(nn.Linear(student_channels, teacher_channels, bias=not with_bn))
            if with_bn:
                layers += [nn.BatchNorm1d(teacher_channels), nn.ReLU()]
        else:
            layers.append(nn.Conv2d(student_channels, teacher_channels, kernel_size=1, bias=not with_bn))
            if with_bn:
                layers += [nn.BatchNorm2d(teacher_channels), nn.ReLU()]
    if not layers:
        return nn.Identity()
    return nn.Sequential(*layers)


def _check_channels(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return value


def _check_size(value, name: str) -> Optional[tuple[int, int]]:
    if value is None:
        return None
    try:
        size = tuple(value)
    except TypeError:
        size = ()
    if len(size) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in size):
        raise ValueError(f"{name} must be None or a (height, width) pair of positive integers; got {value!r}")
    return size  # type: ignore[return-value]


class FeatureDistillationLoss(nn.Module):
    """FitNets hint loss: MSE (mean) between ``self.regressor(student_feat)`` and ``teacher_feat``.

    Args:
        student_channels, teacher_channels: channel counts C of (B, C, H, W) maps, or feature sizes D
            of flat (B, D) features when ``flat=True``.
        regressor: ``"auto"`` | ``"conv"`` | ``"conv_bn_relu"`` (see the module docstring).
        student_size, teacher_size: the (H, W) of the two maps; give both when they differ and the
            student map is resized to the teacher's (pooling when larger, bilinear when smaller).
        flat: the features are flat (B, D) vectors; the regressor uses Linear (+ BatchNorm1d + ReLU).

    ``self.regressor`` owns the trainable parameters (empty for the identity).
    """

    def __init__(
        self,
        student_channels: int,
        teacher_channels: int,
        *,
        regressor: str = "auto",
        student_size: Optional[Sequence[int]] = None,
        teacher_size: Optional[Sequence[int]] = None,
        flat: bool = False,
    ):
        super().__init__()
        self.student_channels = _check_channels(student_channels, "student_channels")
        self.teacher_channels = _check_channels(teacher_channels, "teacher_channels")
        if regressor not in REGRESSOR_KINDS:
            allowed = ", ".join(repr(k) for k in REGRESSOR_KINDS)
            raise ValueError(f"regressor must be one of {allowed}; got {regressor!r}")
        self.student_size = _check_size(student_size, "student_size")
        self.teacher_size = _check_size(teacher_size, "teacher_size")
        if (self.student_size is None) != (self.teacher_size is None):
            raise ValueError("give both student_size and teacher_size, or neither")
        if flat and self.student_size is not None:
            raise ValueError("flat features have no spatial size: leave student_size and teacher_size unset")
        self.flat = bool(flat)
        self.regressor_kind = regressor
        self.regressor = build_regressor(
            self.student_channels,
            self.teacher_channels,
            regressor,
            student_size=self.student_size,
            teacher_size=self.teacher_size,
            flat=self.flat,
        )

    def forward(self, student_feat: Tensor, teacher_feat: Tensor) -> Tensor:
        expected = "(B, D)" if self.flat else "(B, C, H, W)"
        rank = 2 if self.flat else 4
        for side, feat, channels in (
            ("student", student_feat, self.student_channels),
            ("teacher", teacher_feat, self.teacher_channels),
        ):
            if feat.dim() != rank or feat.shape[1] != channels:
                raise ValueError(
                    f"hint loss expects {side} features {expected} with {channels} "
                    f"{'features' if self.flat else 'channels'}; got {tuple(feat.shape)}"
                )
        teacher = teacher_feat.detach().float()
        projected = self.regressor(student_feat.float()).float()
        if projected.shape != teacher.shape:
            raise ValueError(
                f"hint loss: the regressed student features have shape {tuple(projected.shape)} but the "
                f"teacher features have shape {tuple(teacher.shape)}; pass student_size and teacher_size "
                "when the spatial sizes differ"
            )
        return F.mse_loss(projected, teacher)

    def extra_repr(self) -> str:
        text = f"{self.student_channels}→{self.teacher_channels}, regressor={self.regressor_kind!r}"
        if self.flat:
            text += ", flat=True"
        if self.student_size is not None:
            text += f", student_size={self.student_size}, teacher_size={self.teacher_size}"
        return text


FitNetLoss = FeatureDistillationLoss
"""Alias: the FitNets hint loss (Romero et al. 2015)."""

# ---- the method ---------------------------------------------------------------------------------


def _check(student: list, teacher: list, options: dict) -> str:
    (s,), (t,) = student, teacher
    name = METHOD.short_name
    for side, shape in (("student", s), ("teacher", t)):
        if len(shape) not in (1, 3):
            raise Refusal(f"{name} needs feature maps (C,H,W) or flat features (D,); {side} layer gives {shape}")
    if len(s) != len(t):
        raise Refusal(
            f"{name} needs two feature maps (C,H,W) or two flat feature vectors (D,); "
            f"student layer gives {s} and teacher layer gives {t}"
        )
    regressor = options["regressor"]
    parts = []
    if len(s) == 3:
        mode = resize_mode(s[1:], t[1:])
        sizes = f"{size_text(s[1:])}→{size_text(t[1:])}"
        if mode == "pool":
            parts.append(f"student map pooled {sizes}")
        elif mode == "bilinear":
            parts.append(f"student map upsampled {sizes} (bilinear)")
    if needs_projection(s[0], t[0], regressor):
        layer, unit = ("linear", "features") if len(s) == 1 else ("1×1 conv", "channels")
        extra = " + BatchNorm + ReLU" if regressor == "conv_bn_relu" else ""
        parts.append(f"{layer}{extra} regressor {s[0]}→{t[0]} {unit}")
    return "; ".join(parts) or "none"


def _build(context) -> nn.Module:
    (s,), (t,) = context.student_shapes, context.teacher_shapes
    flat = len(s) == 1
    return FeatureDistillationLoss(
        s[0], t[0],
        regressor=context.options["regressor"],
        student_size=None if flat else s[1:],
        teacher_size=None if flat else t[1:],
        flat=flat,
    )


METHOD = register_method(Method(
    key="hint",
    title="FitNets hint",
    short_name="the hint loss",
    paper="Romero, Ballas, Kahou, Chassang, Gatta & Bengio, “FitNets: Hints for Thin Deep Nets”, ICLR 2015",
    formula="L = mean (r(F_s) − F_t)²,  r = trained regressor mapping the student features to the teacher's shape",
    summary=(
        "The student's layer is trained to reproduce the teacher's layer value for value, through a "
        "small trained regressor that maps the student's channels (and spatial size) onto the teacher's. "
        "It is the most direct form of feature distillation; pick layers at a similar depth in both networks."
    ),
    options={
        "regressor": OptionSpec(
            default="conv_bn_relu", type=str, choices=REGRESSOR_KINDS,
            help=(
                "how the student features are mapped onto the teacher's: 'conv_bn_relu' (1×1 conv + "
                "BatchNorm + ReLU, as RepDistiller/mdistiller), 'conv' (1×1 conv) or 'auto' (identity "
                "when the channel counts match, else 1×1 conv)"
            ),
        ),
    },
    layers=ONE_LAYER,
    taps=Taps.OUTPUT,
    # RepDistiller scripts/run_cifar_distill.sh (--distill hint -b 100); mdistiller's FitNet config
    # (FEAT_WEIGHT: 100).
    default_weight=100.0,
    check=_check,
    build=_build,
    placement="middle_stage",
))


__all__ = [
    "METHOD",
    "REGRESSOR_KINDS",
    "FeatureDistillationLoss",
    "FitNetLoss",
    "ResizeTo",
    "build_regressor",
    "needs_projection",
    "resize_mode",
]
