"""Activation boundaries (Heo, Lee, Yun & Choi, "Knowledge Transfer via Distillation of Activation
Boundaries Formed by Hidden Neurons", AAAI 2019).

A ReLU neuron splits its input space at the boundary where its pre-activation changes sign. AB trains
the student so that its neurons are active exactly where the teacher's are, by a hinge on the
*pre-ReLU* features: a student value must be above +μ where the teacher's is positive and below −μ
where the teacher's is not::

    r(S)    = connector(S)                          1×1 conv + BatchNorm (none when shapes match)
    ℓ(s, t) = (s + μ)² · 1[s > −μ and t ≤ 0]  +  (s − μ)² · 1[s ≤ μ and t > 0]
    L_i     = (3 / 1000) · (1/B) Σ_{c,h,w} ℓ(r(S_i), T_i)        layer i of n (shallow → deep)
    L       = Σ_i 2^(i − n + 1) · L_i                            the deepest layer weighted 1, each shallower one half

This is RepDistiller's ``ABLoss`` (``distiller_zoo/AB.py``, margin μ = 1, the layer weights 2^(i−n+1)
and the 3/1000 scale are its own), which is what its CIFAR-100 numbers use; the paper states the loss
as the squared norm of ``ρ(T) ⊙ σ(μ − r(S)) + (1 − ρ(T)) ⊙ σ(μ + r(S))`` (σ = ReLU, ρ = step), the
same hinge without the layer weights and scale. At s = μ for a positive teacher the two forms agree
(the hinge is zero there).

AB is an *initialisation* method: RepDistiller's ``train_student.py --distill abound`` trains the
connector and the student's feature layers with this loss alone (weight 1, no cross-entropy) for
``init_epochs = 30`` (``helper/pretrain.py``), then trains the student normally with no AB term.
Here that is ``stage = "init"`` with ``init_epochs`` in the run file. (RepDistiller also keeps the
student in eval mode during that stage, so its BatchNorm statistics do not move; featdistill's
initialisation stage trains in train mode, as for FSP.)

The features must be pre-ReLU on both sides (RepDistiller's ``preact=True``): tap the built-in
networks' ``preact`` modules (``layer2.0.preact``) or a BatchNorm whose output enters a ReLU; the
reference placement finds them. Post-ReLU teacher features make every teacher value ≥ 0 and the
loss degenerate. When the spatial sizes differ, the student map is pooled (larger) or bilinearly
upsampled (smaller) to the teacher's size before the connector, as the FitNets regressor does
(RepDistiller's ConvReg handles only 2× steps with strided / transposed convs). The math runs in
float32; the teacher maps are detached.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from .fitnet import ResizeTo, resize_mode
from .registry import LayerCount, Method, OptionSpec, Taps, register_method, require_maps, size_text

SCALE = 3.0 / 1000.0      # RepDistiller's ``l / 1000 * 3``


def boundary_loss(student: Tensor, teacher: Tensor, margin: float) -> Tensor:
    """Σ over channels and positions of the activation-boundary hinge, divided by the batch size."""
    s, t = student.float(), teacher.detach().float()
    negative = (s + margin).pow(2) * ((s > -margin) & (t <= 0))
    positive = (s - margin).pow(2) * ((s <= margin) & (t > 0))
    return (negative + positive).sum() / s.shape[0]


def layer_weights(count: int) -> list[float]:
    """2^(i − n + 1) for i = 0..n−1: the deepest layer 1, each shallower one half the next."""
    return [2.0 ** (i - count + 1) for i in range(count)]


def _connector(student: Sequence[int], teacher: Sequence[int]) -> nn.Module:
    layers: list[nn.Module] = []
    if resize_mode(student[1:], teacher[1:]) != "none":
        layers.append(ResizeTo(teacher[1:]))
    if student[0] != teacher[0] or layers:
        layers += [nn.Conv2d(student[0], teacher[0], kernel_size=1, bias=False), nn.BatchNorm2d(teacher[0])]
    return nn.Sequential(*layers) if layers else nn.Identity()


class ABLoss(nn.Module):
    """Activation-boundary loss over n layer pairs (see the module docstring).

    ``student_shapes`` / ``teacher_shapes``: the per-sample (C, H, W) of each pair, shallow to deep.
    ``self.connectors`` holds one connector per pair (``nn.Identity`` where the shapes already match).
    """

    def __init__(self, student_shapes: Sequence[Sequence[int]], teacher_shapes: Sequence[Sequence[int]],
                 margin: float = 1.0):
        super().__init__()
        if len(student_shapes) != len(teacher_shapes) or not student_shapes:
            raise ValueError("AB needs the same number (≥ 1) of student and teacher layers")
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not math.isfinite(margin) or margin < 0:
            raise ValueError(f"AB margin must be a number ≥ 0; got {margin!r}")
        self.margin = float(margin)
        self.student_shapes = [tuple(s) for s in student_shapes]
        self.teacher_shapes = [tuple(t) for t in teacher_shapes]
        self.weights = layer_weights(len(student_shapes))
        self.connectors = nn.ModuleList(_connector(s, t) for s, t in zip(self.student_shapes, self.teacher_shapes))

    def forward(self, student: Sequence[Tensor], teacher: Sequence[Tensor]) -> Tensor:
        if len(student) != len(self.connectors) or len(teacher) != len(self.connectors):
            raise ValueError(f"AB was built for {len(self.connectors)} layer pairs; got {len(student)} student "
                             f"and {len(teacher)} teacher tensors")
        total = None
        for weight, connector, s, t in zip(self.weights, self.connectors, student, teacher):
            mapped = connector(s.float()).float()
            if mapped.shape != t.shape:
                raise ValueError(f"AB: the connected student map {tuple(mapped.shape)} does not match the teacher "
                                 f"map {tuple(t.shape)}")
            with torch.autocast(device_type=mapped.device.type, enabled=False):
                term = weight * SCALE * boundary_loss(mapped, t, self.margin)
            total = term if total is None else total + term
        return total

    def extra_repr(self) -> str:
        return f"layers={len(self.connectors)}, margin={self.margin:g}"


# ---- the method ---------------------------------------------------------------------------------


def _check(student: list, teacher: list, options: dict) -> str:
    require_maps(METHOD, student, "student")
    require_maps(METHOD, teacher, "teacher")
    parts = []
    for index, (s, t) in enumerate(zip(student, teacher)):
        where = f" (layer {index + 1})" if len(student) > 1 else ""
        mode = resize_mode(s[1:], t[1:])
        if mode != "none":
            parts.append(f"student map {'pooled' if mode == 'pool' else 'upsampled (bilinear)'} "
                         f"{size_text(s[1:])}→{size_text(t[1:])}{where}")
        if s[0] != t[0] or mode != "none":
            parts.append(f"1×1 conv + BatchNorm connector {s[0]}→{t[0]} channels{where}")
    return "; ".join(parts) or "none"


def _build(context) -> nn.Module:
    return ABLoss(context.student_shapes, context.teacher_shapes, margin=context.options["margin"])


METHOD = register_method(Method(
    key="ab",
    title="Activation boundaries (AB)",
    short_name="AB",
    paper=("Heo, Lee, Yun & Choi, “Knowledge Transfer via Distillation of Activation Boundaries Formed by "
           "Hidden Neurons”, AAAI 2019"),
    formula="L = Σ_i 2^(i−n+1) · (3/1000) · (1/B) Σ [(s+μ)²·1(s>−μ, t≤0) + (s−μ)²·1(s≤μ, t>0)],  s = connector(S_i), t = T_i (pre-ReLU)",
    summary=(
        "The student's neurons are trained to switch on exactly where the teacher's do: a hinge on the "
        "pre-ReLU features pushes each student value above +μ where the teacher is active and below −μ "
        "where it is not. It is an initialisation stage before normal training."
    ),
    options={
        "margin": OptionSpec(1.0, float, minimum=0.0, maximum=1e3,
                             help="margin μ the pre-activations must clear on the right side of zero (RepDistiller: 1)"),
    },
    layers=LayerCount(1, None),
    taps=Taps.OUTPUT,
    # RepDistiller helper/pretrain.py: the init stage back-propagates sum(ABLoss(...)) unweighted for
    # init_epochs = 30; the main stage has no AB term (loops.py: loss_kd = 0 for 'abound').
    default_weight=1.0,
    check=_check,
    build=_build,
    placement="stage_preacts",
    default_stage="init",
))


__all__ = ["ABLoss", "METHOD", "boundary_loss", "layer_weights"]
