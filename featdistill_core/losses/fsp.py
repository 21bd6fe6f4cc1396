"""Flow of Solution Procedure (Yim, Joo, Bae & Kim, "A Gift from Knowledge Distillation: Fast
Optimization, Network Minimization and Transfer Learning", CVPR 2017).

Two feature maps F₁ (C₁ channels) and F₂ (C₂ channels) of the same network define its "flow"
matrix, the channel-by-channel inner products over positions::

    G[i, j] = (1/(H·W)) Σ_{h,w} F₁[i, h, w] · F₂[j, h, w]       # flow_matrix(), shape (B, C₁, C₂)
    L       = mean (G_student − G_teacher)²                      # mean over batch and matrix entries

When the two maps of a pair have different spatial sizes, the larger is adaptive-average-pooled to the
smaller (RepDistiller's ``FSP``). Student and teacher may have different spatial sizes (G does not
depend on them). When their channel counts differ, each student map passes through a trained 1×1 conv
regressor to the teacher's channel count. The paper sums squared L2 distances; the mean used here is
RepDistiller's. RepDistiller trains the student with this loss alone (weight 1) for a 30-epoch
initialisation stage, then trains normally without it.

The loss math (the matrix product included) runs in float32 with autocast disabled; the teacher maps
are detached.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from .attention import pool_to_common_size
from .registry import TWO_LAYERS, Method, Taps, register_method, require_maps, size_text


def flow_matrix(first: Tensor, second: Tensor) -> Tensor:
    """FSP matrix G = F₁·F₂ᵀ/(H·W) of two (B, C, H, W) maps, float32 of shape (B, C₁, C₂)."""
    for name, feat in (("first", first), ("second", second)):
        if feat.dim() != 4:
            raise ValueError(f"FSP needs 4-D feature maps (N,C,H,W); the {name} map is {tuple(feat.shape)}")
    first, second = pool_to_common_size(first.float(), second.float())
    with torch.autocast(device_type=first.device.type, enabled=False):
        positions = first.shape[-2] * first.shape[-1]
        return torch.bmm(first.flatten(2), second.flatten(2).transpose(1, 2)) / positions


def _check_channel_pair(value, name: str) -> Optional[tuple[int, int]]:
    if value is None:
        return None
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in pair):
        raise ValueError(f"{name} must be None or a pair of positive channel counts (C1, C2); got {value!r}")
    return pair  # type: ignore[return-value]


def _check_pair(pair, side: str) -> tuple[Tensor, Tensor]:
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise ValueError(f"FSP needs the {side} features as a pair (first, second) of feature maps")
    for index, feat in enumerate(pair, start=1):
        if not isinstance(feat, Tensor) or feat.dim() != 4:
            shape = tuple(feat.shape) if isinstance(feat, Tensor) else type(feat).__name__
            raise ValueError(f"FSP needs 4-D feature maps (N,C,H,W); {side} map {index} is {shape}")
    return pair[0], pair[1]


class FSPLoss(nn.Module):
    """FSP loss between a student pair and a teacher pair of feature maps (see module docstring).

    Args:
        student_channels, teacher_channels: (C₁, C₂) of the two maps of each side. Give both to get a
            trained 1×1 conv regressor for each student map whose channel count differs from the
            teacher's; leave both None when the channel counts match.

    ``self.regressors`` holds one module per map (``nn.Identity`` where no regressor is needed).
    """

    def __init__(
        self,
        student_channels: Optional[Sequence[int]] = None,
        teacher_channels: Optional[Sequence[int]] = None,
    ):
        super().__init__()
        self.student_channels = _check_channel_pair(student_channels, "student_channels")
        self.teacher_channels = _check_channel_pair(teacher_channels, "teacher_channels")
        if (self.student_channels is None) != (self.teacher_channels is None):
            raise ValueError("give both student_channels and teacher_channels, or neither")
        regressors: list[nn.Module] = [nn.Identity(), nn.Identity()]
        if self.student_channels is not None:
            for index, (c_student, c_teacher) in enumerate(zip(self.student_channels, self.teacher_channels)):
                if c_student != c_teacher:
                    regressors[index] = nn.Conv2d(c_student, c_teacher, kernel_size=1)
        self.regressors = nn.ModuleList(regressors)

    def forward(self, student_pair: Sequence[Tensor], teacher_pair: Sequence[Tensor]) -> Tensor:
        student_maps = _check_pair(student_pair, "student")
        teacher_maps = _check_pair(teacher_pair, "teacher")
        batch_sizes = {feat.shape[0] for feat in (*student_maps, *teacher_maps)}
        if len(batch_sizes) != 1:
            raise ValueError(f"FSP needs all four maps with the same batch size; got {sorted(batch_sizes)}")
        if self.student_channels is not None:
            for index, (feat, channels) in enumerate(zip(student_maps, self.student_channels), start=1):
                if feat.shape[1] != channels:
                    raise ValueError(
                        f"FSP: student map {index} has {feat.shape[1]} channels; this loss was built for {channels}"
                    )
        first, second = (regressor(feat.float()).float() for regressor, feat in zip(self.regressors, student_maps))
        g_student = flow_matrix(first, second)
        g_teacher = flow_matrix(teacher_maps[0].detach(), teacher_maps[1].detach())
        if g_student.shape != g_teacher.shape:
            raise ValueError(
                f"FSP matrices differ in shape: student {tuple(g_student.shape)}, teacher "
                f"{tuple(g_teacher.shape)}; pass student_channels and teacher_channels to add 1×1 conv regressors"
            )
        return (g_student - g_teacher).pow(2).mean()

    def extra_repr(self) -> str:
        if self.student_channels is None:
            return ""
        return f"student_channels={self.student_channels}, teacher_channels={self.teacher_channels}"


# ---- the method ---------------------------------------------------------------------------------


def _check(student: list, teacher: list, options: dict) -> str:
    require_maps(METHOD, student, "student")
    require_maps(METHOD, teacher, "teacher")
    parts = []
    for side, shapes in (("student", student), ("teacher", teacher)):
        common = (min(shapes[0][1], shapes[1][1]), min(shapes[0][2], shapes[1][2]))
        for index, shape in enumerate(shapes):
            if shape[1:] != common:
                parts.append(f"{side} layer {index + 1} pooled {size_text(shape[1:])}→{size_text(common)}")
    for index, (s, t) in enumerate(zip(student, teacher)):
        if s[0] != t[0]:
            parts.append(f"1×1 conv regressor {s[0]}→{t[0]} channels on student layer {index + 1}")
    return "; ".join(parts) or "none"


def _build(context) -> nn.Module:
    student, teacher = context.student_shapes, context.teacher_shapes
    return FSPLoss(student_channels=(student[0][0], student[1][0]), teacher_channels=(teacher[0][0], teacher[1][0]))


METHOD = register_method(Method(
    key="fsp",
    title="Flow of solution procedure (FSP)",
    short_name="FSP",
    paper=(
        "Yim, Joo, Bae & Kim, “A Gift from Knowledge Distillation: Fast Optimization, Network "
        "Minimization and Transfer Learning”, CVPR 2017"
    ),
    formula="G = F₁·F₂ᵀ / (H·W)  (C₁×C₂ per sample),  L = mean (G_s − G_t)²",
    summary=(
        "Two layers of each network define a flow matrix: how every channel of the first layer correlates "
        "with every channel of the second over all positions. The student is trained to reproduce the "
        "teacher's flow between the same two stages; the original recipe uses it as an initialisation "
        "stage before normal training."
    ),
    options={},
    layers=TWO_LAYERS,
    taps=Taps.OUTPUT,
    # RepDistiller helper/pretrain.py sums the FSP losses unweighted during its 30-epoch initialisation
    # stage (the -b 50 of its script has no effect: the main stage sets the FSP term to 0).
    default_weight=1.0,
    check=_check,
    build=_build,
    placement="stage_pairs",
    default_stage="init",
))


__all__ = ["FSPLoss", "METHOD", "flow_matrix"]
