"""ShuffleNet (v1) for CIFAR (Zhang et al., "ShuffleNet: An Extremely Efficient Convolutional Neural
Network for Mobile Devices", CVPR 2018), as RepDistiller's ``ShuffleNetv1.py`` builds it.

A 1x1 stem to 24 channels (no downsampling), then three stages of 4, 8 and 4 shuffle units with
3 groups and widths 240-480-960 at 16x16, 8x8 and 4x4, global average pooling, a linear classifier.
The first unit of a stage has stride 2 and concatenates a 3x3 average-pooled shortcut to its
output; the others add an identity shortcut.

Module paths: ``conv1``, ``bn1``, ``layer1``..``layer3`` (stage outputs, after ReLU),
``layer2.3.conv2`` (a unit's depthwise conv), ``layer2.3.preact`` (a unit's output before its ReLU;
parameter-free), ``fc``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from featdistill_core.models.layers import PreActivation, channel_shuffle, conv1x1, init_conv_bn
from featdistill_core.models.registry import register_model


class ShuffleUnit(nn.Module):
    """Grouped 1x1 -> channel shuffle -> depthwise 3x3 (stride s) -> grouped 1x1, then a shortcut.

    stride 1: out = relu(F(x) + x); stride 2: out = relu(concat(F(x), avgpool3x3/2(x))), so the
    unit's output has ``in_channels + branch_channels`` channels. ``input_groups`` is the group
    count of the first 1x1 conv (1 on the 24-channel stem output, ``groups`` elsewhere). ``preact``
    (no parameters) outputs the tensor entering the final ReLU.
    """

    def __init__(self, in_channels: int, branch_channels: int, stride: int, groups: int, input_groups: int):
        super().__init__()
        mid_channels = branch_channels // 4
        self.stride = stride
        self.input_groups = input_groups
        self.conv1 = conv1x1(in_channels, mid_channels, groups=input_groups)
        self.bn1 = nn.BatchNorm2d(mid_channels)
        self.conv2 = nn.Conv2d(mid_channels, mid_channels, kernel_size=3, stride=stride, padding=1,
                               groups=mid_channels, bias=False)
        self.bn2 = nn.BatchNorm2d(mid_channels)
        self.conv3 = conv1x1(mid_channels, branch_channels, groups=groups)
        self.bn3 = nn.BatchNorm2d(branch_channels)
        self.preact = PreActivation("bn3")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = channel_shuffle(out, self.input_groups)
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.stride == 2:
            out = torch.cat([out, F.avg_pool2d(x, kernel_size=3, stride=2, padding=1)], dim=1)
        else:
            out = out + x
        return F.relu(self.preact(out))


class ShuffleNetV1(nn.Module):
    """ShuffleNet v1 with the given stage widths, unit counts and group count."""

    stage_names = ("layer1", "layer2", "layer3")

    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int] = (240, 480, 960),
                 units: tuple[int, int, int] = (4, 8, 4), groups: int = 3, stem_channels: int = 24):
        super().__init__()
        self.conv1 = conv1x1(3, stem_channels)
        self.bn1 = nn.BatchNorm2d(stem_channels)
        in_channels = stem_channels
        for index, (width, count) in enumerate(zip(widths, units), start=1):
            stage = []
            for unit in range(count):
                if unit == 0:
                    input_groups = 1 if index == 1 else groups
                    stage.append(ShuffleUnit(in_channels, width - in_channels, 2, groups, input_groups))
                else:
                    stage.append(ShuffleUnit(width, width, 1, groups, groups))
            self.add_module(f"layer{index}", nn.Sequential(*stage))
            in_channels = width
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)
        init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


@register_model("shufflenetv1", family="shufflenet")
def shufflenetv1(num_classes: int) -> ShuffleNetV1:
    """ShuffleNet v1 for CIFAR: g=3, 4-8-4 units, widths 240-480-960 (~0.95M params)."""
    return ShuffleNetV1(num_classes)
