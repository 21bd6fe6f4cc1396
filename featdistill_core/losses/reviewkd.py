"""Knowledge review (Chen, Liu, Zhao & Jia, "Distilling Knowledge via Knowledge Review", CVPR 2021).

Each teacher stage is taught not by the student's stage at the same depth alone but by a fusion of
that stage with every deeper student stage — a shallow teacher stage "reviews" deep student knowledge.
The fusion runs from the deepest level to the shallowest with attention-based fusion (ABF) modules,
and each fused map is compared with its teacher map by the hierarchical context loss (HCL)::

    levels 1..n, shallow → deep (the term's layers), plus level n+1 = the global average pool of the
    deepest maps (``pooled``, as the references' ``pooled_feat``)
    ABF_n+1:  x = conv1(S_n+1)                                   (1×1 conv + BN to M channels)
              R_n+1 = resize(x, T-size of n+1),  Y_n+1 = conv2(R_n+1)   (3×3 conv + BN to C_t channels)
    ABF_i:    x = conv1(S_i);  r = resize(R_i+1, size of x)
              a = sigmoid(conv1×1([x, r]))  (2 maps),   x = x · a₀ + r · a₁
              R_i = resize(x, T-size of i),  Y_i = conv2(R_i)
    HCL(Y, T) = [mse(Y, T) + Σ_{l = 4, 2, 1; l < size} 2^−j mse(pool_l(Y), pool_l(T))] / (1 + Σ 2^−j)
    L = min(epoch / warmup, 1) · Σ_i HCL(Y_i, T_i)

M = min(512, C of the deepest student level). This is the authors' ``ABF``, ``ReviewKD`` and ``hcl``
(dvlab-research/ReviewKD ``CIFAR-100/model/reviewkd.py``; mdistiller ``ReviewKD.py`` is the same):
pyramid levels 4, 2, 1 weighted 1/2, 1/4, 1/8 after the full-resolution term, normalised by the total
weight; warm-up over 20 epochs with the 1-based epoch of the stage (mdistiller), weight 5 on CIFAR-100.

Made general, so that any channel counts and spatial sizes the check accepts work (the references
take square sizes as single integers and the channel lists from a table per architecture):

* every ABF is built from the tapped shapes: C_s of its level in, M in the middle, C_t of the paired
  teacher level out; spatial sizes are (H, W) pairs, never assumed square or halving;
* ``resize`` is nearest-neighbour interpolation when it enlarges (the references' ``F.interpolate``,
  the only case their pairs meet) and adaptive average pooling when the target is smaller in both
  dimensions (nearest would then drop pixels);
* HCL's pyramid: level l is used when the map is larger than l in some dimension, pooled to
  (min(l, H), min(l, W)) — for square maps exactly the references' ``l < h``.

The teacher features of the references are pre-ReLU (``preact=True``) while the student's are not;
the reference placement here pairs the stage outputs of both sides (``all_stages``), and a user may
tap the teacher's ``preact`` modules instead. The fused maps come from trained ABFs (adapters); the
HCL math runs in float32 with autocast disabled; the teacher maps are detached.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .registry import LayerCount, Method, OptionSpec, StepContext, Taps, register_method, require_maps, size_text

MAX_MID_CHANNELS = 512
PYRAMID = (4, 2, 1)


def resize(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bring a (B, C, H, W) map to ``size``: average pooling when smaller in both dimensions, else nearest."""
    size = (int(size[0]), int(size[1]))
    h, w = x.shape[-2:]
    if (h, w) == size:
        return x
    if size[0] <= h and size[1] <= w:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=size, mode="nearest")


def hcl(student: Tensor, teacher: Tensor) -> Tensor:
    """Hierarchical context loss of one level (float32)."""
    s, t = student.float(), teacher.detach().float()
    h, w = s.shape[-2:]
    loss = F.mse_loss(s, t)
    weight, total = 1.0, 1.0
    for level in PYRAMID:
        if level >= h and level >= w:
            continue
        size = (min(level, h), min(level, w))
        weight /= 2.0
        loss = loss + weight * F.mse_loss(F.adaptive_avg_pool2d(s, size), F.adaptive_avg_pool2d(t, size))
        total += weight
    return loss / total


class ABF(nn.Module):
    """Attention-based fusion of one level: ``forward(x, residual, out_size) -> (output, new residual)``."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, fuse: bool):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels, mid_channels, kernel_size=1, bias=False),
                                   nn.BatchNorm2d(mid_channels))
        self.conv2 = nn.Sequential(nn.Conv2d(mid_channels, out_channels, kernel_size=3, padding=1, bias=False),
                                   nn.BatchNorm2d(out_channels))
        self.att_conv = (nn.Sequential(nn.Conv2d(mid_channels * 2, 2, kernel_size=1), nn.Sigmoid())
                         if fuse else None)
        nn.init.kaiming_uniform_(self.conv1[0].weight, a=1)
        nn.init.kaiming_uniform_(self.conv2[0].weight, a=1)

    def forward(self, x: Tensor, residual: Optional[Tensor], out_size: Sequence[int]) -> tuple[Tensor, Tensor]:
        x = self.conv1(x)
        if self.att_conv is not None:
            if residual is None:
                raise ValueError("this ABF fuses a deeper level and needs its residual")
            residual = resize(residual, x.shape[-2:])
            attention = self.att_conv(torch.cat([x, residual], dim=1))
            x = x * attention[:, 0:1] + residual * attention[:, 1:2]
        x = resize(x, out_size)
        return self.conv2(x), x


class ReviewKDLoss(nn.Module):
    """ABF fusion of the student levels and HCL against the teacher levels (see the module docstring).

    ``student_shapes`` / ``teacher_shapes``: per-sample (C, H, W) of each level, shallow to deep.
    ``pooled`` adds the global average pool of the deepest maps as the deepest level.
    ``forward(student_maps, teacher_maps)`` returns Σ HCL without the warm-up factor.
    """

    def __init__(self, student_shapes: Sequence[Sequence[int]], teacher_shapes: Sequence[Sequence[int]], *,
                 pooled: bool = True, warmup: int = 20, max_mid_channels: int = MAX_MID_CHANNELS):
        super().__init__()
        if len(student_shapes) != len(teacher_shapes) or not student_shapes:
            raise ValueError("ReviewKD needs the same number (≥ 1) of student and teacher layers")
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ValueError(f"ReviewKD warmup must be a whole number of epochs ≥ 0; got {warmup!r}")
        student = [tuple(int(v) for v in s) for s in student_shapes]
        teacher = [tuple(int(v) for v in t) for t in teacher_shapes]
        for side, shapes in (("student", student), ("teacher", teacher)):
            if any(len(shape) != 3 for shape in shapes):
                raise ValueError(f"ReviewKD needs (C, H, W) feature maps; {side} shapes are {shapes}")
        self.pooled, self.warmup = bool(pooled), warmup
        if self.pooled:
            student.append((student[-1][0], 1, 1))
            teacher.append((teacher[-1][0], 1, 1))
        self.student_shapes, self.teacher_shapes = student, teacher
        self.mid_channels = min(max_mid_channels, student[-1][0])
        count = len(student)
        self.abfs = nn.ModuleList(   # index i: level i (shallow → deep); the deepest fuses nothing
            ABF(s[0], self.mid_channels, t[0], fuse=i < count - 1) for i, (s, t) in enumerate(zip(student, teacher))
        )

    def warmup_factor(self, epoch: int) -> float:
        """min(epoch / warmup, 1) for the 1-based ``epoch`` (1 when warmup is 0)."""
        return 1.0 if self.warmup == 0 else min(epoch / self.warmup, 1.0)

    def _levels(self, maps: Sequence[Tensor], side: str) -> list[Tensor]:
        maps = list(maps)
        expected = len(self.abfs) - (1 if self.pooled else 0)
        if len(maps) != expected:
            raise ValueError(f"ReviewKD was built for {expected} {side} layers; got {len(maps)}")
        for index, (feat, shape) in enumerate(zip(maps, self.student_shapes if side == "student" else self.teacher_shapes)):
            if feat.dim() != 4 or tuple(feat.shape[1:]) != shape:
                raise ValueError(f"ReviewKD: {side} layer {index + 1} gives {tuple(feat.shape)}, built for (B, {shape})")
        if self.pooled:
            maps.append(F.adaptive_avg_pool2d(maps[-1], 1))
        return maps

    def fuse(self, student_maps: Sequence[Tensor]) -> list[Tensor]:
        """The fused student maps, one per level (shallow → deep), each at its teacher level's shape."""
        levels = self._levels(student_maps, "student")
        outputs: list[Tensor] = [None] * len(levels)  # type: ignore[list-item]
        residual = None
        for index in reversed(range(len(levels))):
            outputs[index], residual = self.abfs[index](levels[index].float(), residual,
                                                        self.teacher_shapes[index][1:])
        return outputs

    def forward(self, student_maps: Sequence[Tensor], teacher_maps: Sequence[Tensor]) -> Tensor:
        fused = self.fuse(student_maps)
        targets = self._levels([t.detach() for t in teacher_maps], "teacher")
        with torch.autocast(device_type=fused[0].device.type, enabled=False):
            return sum(hcl(y.float(), t.float()) for y, t in zip(fused, targets))

    def extra_repr(self) -> str:
        return f"levels={len(self.abfs)}, mid_channels={self.mid_channels}, pooled={self.pooled}, warmup={self.warmup}"


class _ReviewKDTerm(ReviewKDLoss):
    """ReviewKD as a run's term: reads the epoch from the step for the warm-up."""

    def forward(self, step: StepContext) -> Tensor:  # type: ignore[override]
        return self.warmup_factor(step.progress.epoch) * super().forward(step.student, step.teacher)


# ---- the method ---------------------------------------------------------------------------------


def _check(student: list, teacher: list, options: dict) -> str:
    require_maps(METHOD, student, "student")
    require_maps(METHOD, teacher, "teacher")
    mid = min(MAX_MID_CHANNELS, student[-1][0])
    levels = len(student) + (1 if options["pooled"] else 0)
    resized = [f"level {i + 1} {size_text(s[1:])}→{size_text(t[1:])}"
               for i, (s, t) in enumerate(zip(student, teacher)) if s[1:] != t[1:]]
    text = (f"{levels} attention-based fusion modules (1×1 conv to {mid} channels, 3×3 conv to the teacher's "
            f"channels){' including the pooled level' if options['pooled'] else ''}")
    if resized:
        text += "; fused maps resized to the teacher's size: " + ", ".join(resized)
    return text


def _build(context) -> nn.Module:
    o = context.options
    return _ReviewKDTerm(context.student_shapes, context.teacher_shapes, pooled=o["pooled"], warmup=o["warmup"])


METHOD = register_method(Method(
    key="reviewkd",
    title="Knowledge review (ReviewKD)",
    short_name="ReviewKD",
    paper="Chen, Liu, Zhao & Jia, “Distilling Knowledge via Knowledge Review”, CVPR 2021",
    formula="Y_i = ABF_i(S_i, R_i+1) (attention fusion of student level i with the deeper fused levels),  L = min(epoch/warmup, 1) · Σ_i HCL(Y_i, T_i)",
    summary=(
        "Every teacher stage is matched by a fusion of the student's stage at that depth with all of its "
        "deeper stages, built from the deepest level up by attention-based fusion modules. The matching "
        "loss compares the maps at several pooled resolutions."
    ),
    options={
        "pooled": OptionSpec(True, bool, help="add the global average pool of the deepest maps as the deepest level (as the references)"),
        "warmup": OptionSpec(20, int, minimum=0, maximum=10**6,
                             help="epochs over which the term's weight ramps up linearly (references: 20)"),
    },
    layers=LayerCount(1, None),
    taps=Taps.OUTPUT,
    reads="context",
    # mdistiller configs/cifar100/reviewkd.yaml (REVIEWKD_WEIGHT: 5.0, resnet32x4 → resnet8x4) and
    # ReviewKD CIFAR-100/script/reviewKD.sh (--kd-loss-weight 5.0 for most pairs; 0.6 for
    # resnet56 → resnet20, 1.0 for resnet110 → resnet32, 8.0 for ShuffleNetV2), CE at weight 1.
    default_weight=5.0,
    check=_check,
    build=_build,
    placement="all_stages",
))


__all__ = ["ABF", "METHOD", "ReviewKDLoss", "hcl", "resize"]
