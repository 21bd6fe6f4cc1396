"""Two tiny CIFAR-size networks for the built-in demo, small enough to train on a 2-core CPU.

Both are CIFAR ResNets (see :mod:`featdistill_core.models.resnet`) with the same stage names and
spatial sizes, so every stage pairs with its counterpart without any resizing:

- ``demo_teacher``: 1 basic block per stage, widths 32-64-128 at 32x32, 16x16, 8x8 (~0.32M params);
- ``demo_student``: 2 basic blocks per stage, widths 8-16-32 at the same sizes (~47k params),
  a 4x narrower network whose stages have 4x fewer channels than the teacher's.

Module paths as for the ResNets: ``conv1``, ``bn1``, ``layer1``..``layer3``, ``layer2.0.conv1``, ``fc``.
"""

from __future__ import annotations

from featdistill_core.models.registry import register_model
from featdistill_core.models.resnet import ResNet


@register_model("demo_teacher", family="demo")
def demo_teacher(num_classes: int) -> ResNet:
    """Small demo teacher: ResNet-8 with widths 32-64-128 (~0.32M params)."""
    return ResNet(8, (32, 32, 64, 128), num_classes)


@register_model("demo_student", family="demo")
def demo_student(num_classes: int) -> ResNet:
    """Tiny demo student: ResNet-14 with widths 8-16-32 (~47k params)."""
    return ResNet(14, (8, 8, 16, 32), num_classes)
