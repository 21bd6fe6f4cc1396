"""Overhaul of feature distillation (Heo, Kim, Yun, Park, Kwak & Choi, "A Comprehensive Overhaul of
Feature Distillation", ICCV 2019).

The student is trained on the teacher's *pre-ReLU* features, through a connector, with a partial L2
that ignores what the teacher's ReLU would discard anyway::

    t'    = max(T, m)                        per channel: m_c the teacher's margin (below)
    d     = (r(S) − t')² · 1[r(S) > t'  or  t' > 0]        r = 1×1 conv + BatchNorm connector
    L_i   = (1/B) Σ_{c,h,w} d                                layer i of n (shallow → deep)
    L     = Σ_i L_i / 2^(n − i − 1)                          the deepest layer weighted 1, each shallower one half

Where the teacher is positive the student must match it; where the teacher is negative the student
only has to stay below the margin: a negative value, the expected value of the teacher's negative
responses. With the teacher's pre-activation in channel c modelled as N(β_c, γ_c²) by the BatchNorm
before the ReLU (its affine shift β and scale γ), the margin is the mean of that Gaussian below zero::

    m_c = E[x | x < 0] = β − |γ| · φ(β/|γ|) / Φ(−β/|γ|)       if Φ(−β/|γ|) > 0.001, else −3|γ|

(φ, Φ the standard normal density and distribution). Both reference implementations compute exactly
this (clovaai/overhaul-distillation ``get_margin_from_BN`` and mdistiller ``OFD.py``); the loss is
their ``distillation_loss`` / ``feat_loss``: summed over channels and positions, averaged over the
batch, the 1/1000 of the authors' CIFAR script being mdistiller's ``FEAT_WEIGHT = 0.001``, this
method's default weight. The connector is theirs: 1×1 conv without bias (He-normal init) + BatchNorm
(γ = 1, β = 0), always present.

Which BatchNorm gives the margin
--------------------------------
For each teacher layer of the term (see ``teacher_batchnorm``):

* the layer *is* a ``BatchNorm2d`` — its output is the pre-activation (VGG's ``layer2.bn1``, WRN's
  ``layer3.0.bn1`` — the feature OFD uses for a WRN stage — and most user networks' ``conv → BN →
  ReLU``): that BatchNorm;
* the layer is a ``preact`` marker of a built-in block (``layer2.0.preact`` in the ResNets and
  ShuffleNet v1: the block's output before its final ReLU, a parameter-free
  :class:`~featdistill_core.models.layers.PreActivation`): the sibling BatchNorm it names (``bn2``
  of a ResNet block, as OFD's ``get_bn_before_relu`` takes it, although the residual is added after it);
* anything else: the term is refused when it is built (the validation reports it at the pair), saying
  to tap a BatchNorm whose output enters a ReLU, or a ``preact`` module. A user's network with
  neither (no BatchNorm before its activations) cannot use OFD's margin; pair it with another method.

The margins are read when the term is *prepared* (just before the first step of its stage, when a
teacher trained in the same run is final) and kept in the ``margin<i>`` buffers, saved with the
adapters. The student's layer should be pre-ReLU too (both references distil ``preReLU`` student
features); the reference placement taps the ``preact`` modules on both sides.

Spatial sizes: when they differ, the larger map is average-pooled to the smaller (mdistiller pools the
teacher map to the student's size; pooling whichever is larger also handles a smaller teacher map).
The math runs in float32; the teacher maps are detached.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from .attention import pool_to_common_size
from .registry import LayerCount, Method, PrepareContext, Taps, register_method, require_maps, size_text

MIN_NEGATIVE_MASS = 1e-3     # below this Φ(−β/|γ|) the margin is −3|γ| (both references)


def margin_from_batchnorm(weight: Tensor, bias: Tensor) -> Tensor:
    """Per-channel E[x | x < 0] for x ~ N(bias, weight²) (−3|weight| when that tail is tiny), float32."""
    s = weight.detach().double().abs().clamp_min(1e-12)
    m = bias.detach().double()
    ratio = m / s
    tail = torch.special.ndtr(-ratio)                         # Φ(−m/s)
    density = torch.exp(-0.5 * ratio * ratio) / math.sqrt(2 * math.pi)   # φ(m/s)
    margin = torch.where(tail > MIN_NEGATIVE_MASS, m - s * density / tail.clamp_min(1e-300), -3 * s)
    return margin.float()


def partial_l2(student: Tensor, teacher: Tensor, margin: Tensor) -> Tensor:
    """Σ over channels and positions of OFD's partial L2, averaged over the batch (``margin``: (C,))."""
    s, t = student.float(), teacher.detach().float()
    target = torch.max(t, margin.float().view(1, -1, 1, 1))
    mask = (s > target) | (target > 0)
    return ((s - target).pow(2) * mask).sum() / s.shape[0]


def teacher_batchnorm(teacher: nn.Module, path: str) -> str:
    """The path of the BatchNorm whose affine parameters give the margin of teacher layer ``path``
    (see the module docstring); ValueError when there is none."""
    modules = dict(teacher.named_modules())
    if path not in modules:
        raise ValueError(f"OFD: the teacher has no layer {path!r}")
    module = modules[path]
    if isinstance(module, nn.BatchNorm2d):
        return path
    named = getattr(module, "batchnorm", None)
    if isinstance(named, str) and named:
        parent = path.rpartition(".")[0]
        bn_path = f"{parent}.{named}" if parent else named
        if isinstance(modules.get(bn_path), nn.BatchNorm2d):
            return bn_path
    raise ValueError(
        f"OFD reads its margin from the BatchNorm before the teacher's ReLU, and teacher layer {path!r} "
        f"({type(module).__name__}) is neither a BatchNorm2d nor a `preact` module naming one: tap a "
        "BatchNorm whose output enters a ReLU (e.g. layer2.bn1) or a built-in network's preact module "
        "(e.g. layer2.0.preact)"
    )


def _connector(student_channels: int, teacher_channels: int) -> nn.Sequential:
    conv = nn.Conv2d(student_channels, teacher_channels, kernel_size=1, bias=False)
    nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / teacher_channels))   # n = k·k·C_out, k = 1
    bn = nn.BatchNorm2d(teacher_channels)
    return nn.Sequential(conv, bn)


class OFDLoss(nn.Module):
    """OFD's partial L2 over n layer pairs through conv + BN connectors (see the module docstring).

    ``margins``: one (C_t,) tensor per teacher layer, or None to read them in :meth:`prepare` from the
    teacher BatchNorms at ``batchnorm_paths``.
    """

    def __init__(self, student_channels: Sequence[int], teacher_channels: Sequence[int], *,
                 margins: Sequence[Tensor] | None = None, batchnorm_paths: Sequence[str] | None = None):
        super().__init__()
        if len(student_channels) != len(teacher_channels) or not student_channels:
            raise ValueError("OFD needs the same number (≥ 1) of student and teacher layers")
        if (margins is None) == (batchnorm_paths is None):
            raise ValueError("give OFD either the margins or the teacher BatchNorm paths to read them from")
        self.teacher_channels = [int(c) for c in teacher_channels]
        self.connectors = nn.ModuleList(_connector(s, t) for s, t in zip(student_channels, self.teacher_channels))
        self.batchnorm_paths = list(batchnorm_paths or ())
        for index, channels in enumerate(self.teacher_channels):
            if margins is not None:
                margin = torch.as_tensor(margins[index], dtype=torch.float32).flatten()
                if margin.numel() != channels:
                    raise ValueError(f"OFD margin {index + 1} has {margin.numel()} values for {channels} channels")
            else:
                margin = torch.zeros(channels)
            self.register_buffer(f"margin{index}", margin)
        if margins is None:
            self.prepare = self._read_margins            # the term's one-off preparation (see registry)

    def margins(self) -> list[Tensor]:
        return [getattr(self, f"margin{i}") for i in range(len(self.connectors))]

    def _read_margins(self, context: PrepareContext) -> None:
        modules = dict(context.teacher.named_modules()) if context.teacher is not None else {}
        for index, (path, channels) in enumerate(zip(self.batchnorm_paths, self.teacher_channels)):
            bn = modules.get(path)
            if not isinstance(bn, nn.BatchNorm2d) or bn.num_features != channels or bn.weight is None:
                raise ValueError(f"OFD: teacher BatchNorm {path!r} with {channels} affine channels not found")
            getattr(self, f"margin{index}").copy_(margin_from_batchnorm(bn.weight, bn.bias))

    def forward(self, student: Sequence[Tensor], teacher: Sequence[Tensor]) -> Tensor:
        if len(student) != len(self.connectors) or len(teacher) != len(self.connectors):
            raise ValueError(f"OFD was built for {len(self.connectors)} layer pairs; got {len(student)} student "
                             f"and {len(teacher)} teacher tensors")
        count = len(self.connectors)
        total = None
        for index, (connector, margin, s, t) in enumerate(zip(self.connectors, self.margins(), student, teacher)):
            mapped, target = pool_to_common_size(connector(s.float()).float(), t.detach().float())
            if mapped.shape != target.shape:
                raise ValueError(f"OFD: the connected student map {tuple(mapped.shape)} does not match the "
                                 f"teacher map {tuple(target.shape)}")
            with torch.autocast(device_type=mapped.device.type, enabled=False):
                term = partial_l2(mapped, target, margin) / 2 ** (count - index - 1)
            total = term if total is None else total + term
        return total

    def extra_repr(self) -> str:
        return f"layers={len(self.connectors)}, batchnorms={self.batchnorm_paths}"


# ---- the method ---------------------------------------------------------------------------------


def _check(student: list, teacher: list, options: dict) -> str:
    require_maps(METHOD, student, "student")
    require_maps(METHOD, teacher, "teacher")
    parts = []
    for index, (s, t) in enumerate(zip(student, teacher)):
        where = f" (layer {index + 1})" if len(student) > 1 else ""
        parts.append(f"1×1 conv + BatchNorm connector {s[0]}→{t[0]} channels{where}")
        common = (min(s[1], t[1]), min(s[2], t[2]))
        for side, shape in (("student", s), ("teacher", t)):
            if shape[1:] != common:
                parts.append(f"{side} map pooled {size_text(shape[1:])}→{size_text(common)}{where}")
    return "; ".join(parts)


def _build(context) -> nn.Module:
    if context.teacher is None:
        raise ValueError("OFD needs the teacher network to find the BatchNorms that give its margins")
    paths = [teacher_batchnorm(context.teacher, path) for path in context.teacher_paths]
    modules = dict(context.teacher.named_modules())
    for path, shape in zip(paths, context.teacher_shapes):
        bn = modules[path]
        if bn.num_features != shape[0] or not bn.affine:
            raise ValueError(f"OFD: teacher BatchNorm {path!r} has {bn.num_features} channels"
                             f"{'' if bn.affine else ' and no affine parameters'}, but the tapped teacher "
                             f"layer has {shape[0]}: tap a layer whose channels that BatchNorm describes")
    return OFDLoss([s[0] for s in context.student_shapes], [t[0] for t in context.teacher_shapes],
                   batchnorm_paths=paths)


METHOD = register_method(Method(
    key="ofd",
    title="Overhaul of feature distillation (OFD)",
    short_name="OFD",
    paper=("Heo, Kim, Yun, Park, Kwak & Choi, “A Comprehensive Overhaul of Feature Distillation”, ICCV 2019"),
    formula="t' = max(T, m),  L = Σ_i 2^−(n−i−1) (1/B) Σ (r(S_i) − t')² · 1[r(S_i) > t' ∨ t' > 0],  m = E[x | x<0], x ~ N(β, γ²) of the teacher's BN",
    summary=(
        "The student's connected features are trained to match the teacher's pre-ReLU features where the "
        "teacher is active, and only to stay below a negative margin where it is not, since the teacher's "
        "ReLU discards those values. The margin comes from the BatchNorm before the teacher's ReLU."
    ),
    options={},
    layers=LayerCount(1, None),
    taps=Taps.OUTPUT,
    # mdistiller mdistiller/engine/cfg.py: OFD.LOSS.FEAT_WEIGHT = 0.001 with CE_WEIGHT = 1.0
    # (clovaai/overhaul-distillation CIFAR-100/train_with_distillation.py: loss_distill / batch / 1000).
    default_weight=0.001,
    check=_check,
    build=_build,
    placement="stage_preacts",
))


__all__ = ["METHOD", "OFDLoss", "margin_from_batchnorm", "partial_l2", "teacher_batchnorm"]
