"""VGG with batch norm for CIFAR (Simonyan & Zisserman, ICLR 2015), as RepDistiller's ``vgg.py`` builds it.

Five stages of 3x3 conv + BN + ReLU (conv bias kept, as in RepDistiller), widths 64-128-256-512-512,
with 2x2 max pooling after the first three stages (32 -> 16 -> 8 -> 4; stages 4 and 5 both run at
4x4 on a 32x32 input), then global average pooling and one linear layer (no big FC head).
RepDistiller also pools between stages 4 and 5 when the input is 64x64; here the adaptive pooling
at the end handles any input size instead.

Module paths: ``layer1``..``layer5`` (stage outputs, after ReLU), ``layer2.conv1``, ``layer2.bn1``,
``layer2.relu1`` (the layers inside a stage), ``fc``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from featdistill_core.models.layers import init_conv_bn
from featdistill_core.models.registry import register_model

# Output channels of each conv, stage by stage (RepDistiller's configurations S, A, B, D, E).
VGG_CONFIGS: dict[str, tuple[tuple[int, ...], ...]] = {
    "vgg8": ((64,), (128,), (256,), (512,), (512,)),
    "vgg11": ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    "vgg13": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    "vgg16": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    "vgg19": ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512)),
}

_POOL_AFTER = ("layer1", "layer2", "layer3")


class VGG(nn.Module):
    """VGG-BN whose ``stages`` gives the output channels of every conv in each of the five stages."""

    stage_names = ("layer1", "layer2", "layer3", "layer4", "layer5")

    def __init__(self, stages: tuple[tuple[int, ...], ...], num_classes: int = 10):
        super().__init__()
        if len(stages) != 5:
            raise ValueError(f"VGG needs 5 stages of conv widths, got {len(stages)}")
        in_channels = 3
        for index, widths in enumerate(stages, start=1):
            self.add_module(f"layer{index}", _make_stage(in_channels, widths))
            in_channels = widths[-1]
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)
        init_conv_bn(self)
        nn.init.normal_(self.fc.weight, 0.0, 0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.stage_names:
            x = getattr(self, name)(x)
            if name in _POOL_AFTER:
                x = F.max_pool2d(x, kernel_size=2, stride=2)
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def _make_stage(in_channels: int, widths: tuple[int, ...]) -> nn.Sequential:
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for index, out_channels in enumerate(widths, start=1):
        layers[f"conv{index}"] = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        layers[f"bn{index}"] = nn.BatchNorm2d(out_channels)
        layers[f"relu{index}"] = nn.ReLU()  # not in place: the BN output may be captured by a hook
        in_channels = out_channels
    return nn.Sequential(layers)


@register_model("vgg8", family="vgg")
def vgg8(num_classes: int) -> VGG:
    """VGG-8 with BN: one conv per stage, widths 64-128-256-512-512 (~3.96M params)."""
    return VGG(VGG_CONFIGS["vgg8"], num_classes)


@register_model("vgg11", family="vgg")
def vgg11(num_classes: int) -> VGG:
    """VGG-11 with BN: 1-1-2-2-2 convs per stage, widths 64-128-256-512-512 (~9.28M params)."""
    return VGG(VGG_CONFIGS["vgg11"], num_classes)


@register_model("vgg13", family="vgg")
def vgg13(num_classes: int) -> VGG:
    """VGG-13 with BN: 2 convs per stage, widths 64-128-256-512-512 (~9.46M params)."""
    return VGG(VGG_CONFIGS["vgg13"], num_classes)


@register_model("vgg16", family="vgg")
def vgg16(num_classes: int) -> VGG:
    """VGG-16 with BN: 2-2-3-3-3 convs per stage, widths 64-128-256-512-512 (~14.8M params)."""
    return VGG(VGG_CONFIGS["vgg16"], num_classes)


@register_model("vgg19", family="vgg")
def vgg19(num_classes: int) -> VGG:
    """VGG-19 with BN: 2-2-4-4-4 convs per stage, widths 64-128-256-512-512 (~20.1M params)."""
    return VGG(VGG_CONFIGS["vgg19"], num_classes)
