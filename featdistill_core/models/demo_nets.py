"""Two tiny CIFAR-size networks for the built-in demo, small enough to train on a 2-core CPU.

Both are CIFAR ResNets (see :mod:`featdistill_core.models.resnet`) with 1 basic block per stage and
the same stage names and spatial sizes, so every stage pairs with its counterpart without any resizing:

- ``demo_teacher``: widths 16-32-64 at 32x32, 16x16, 8x8 (~78k params; the same network as ``resnet8``);
- ``demo_student``: widths 8-16-32 at the same sizes (~20k params), half as wide at every stage,
  a quarter of the parameters and of the multiply-adds.

Module paths as for the ResNets: ``conv1``, ``bn1``, ``layer1``..``layer3``, ``layer2.0.conv1``, ``fc``.
"""

from __future__ import annotations

from featdistill_core.models.registry import register_model
from featdistill_core.models.resnet import ResNet


@register_model("demo_teacher", family="demo")
def demo_teacher(num_classes: int) -> ResNet:
    """Small demo teacher: ResNet-8 with widths 16-32-64 (~84k params at 100 classes, 78k at 10)."""
    return ResNet(8, (16, 16, 32, 64), num_classes)


@register_model("demo_student", family="demo")
def demo_student(num_classes: int) -> ResNet:
    """Tiny demo student: ResNet-8 with widths 8-16-32 (~23k params at 100 classes, 20k at 10)."""
    return ResNet(8, (8, 8, 16, 32), num_classes)
