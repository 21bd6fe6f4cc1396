"""MobileNetV2 for CIFAR (Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018).

This is the half-width network (expansion t = 6, width multiplier 0.5) that RepDistiller calls
``mobile_half`` and the CRD benchmark lists as "MobileNetV2": a stride-2 3x3 stem, seventeen
inverted-residual blocks, a 1x1 convolution to 1280 channels, global average pooling and a linear
classifier. As in RepDistiller the activations are ReLU (not ReLU6).

The blocks are grouped into four stages by resolution; their outputs are the points RepDistiller
takes features from. On a 32x32 input:

- ``layer1``: blocks (t=1, c=8, n=1, s=1), (6, 12, 2, 1) -> 12 channels at 16x16
- ``layer2``: blocks (6, 16, 3, 2) -> 16 channels at 8x8
- ``layer3``: blocks (6, 32, 4, 2), (6, 48, 3, 1) -> 48 channels at 4x4
- ``layer4``: blocks (6, 80, 3, 2), (6, 160, 1, 1) -> 160 channels at 2x2

Module paths: ``conv1``, ``bn1``, ``layer1``..``layer4``, ``layer3.2.conv2`` (a block's depthwise
conv), ``conv2``, ``bn2`` (the 1x1 head), ``fc``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from featdistill_core.models.layers import conv1x1, conv3x3, init_conv_bn
from featdistill_core.models.registry import register_model


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise 3x3 (stride s) -> linear project (1x1); out = x + F(x) when shapes match.

    F(x) = bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) with ``expand_ratio * in`` hidden channels.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = in_channels * expand_ratio
        self.use_residual = stride == 1 and in_channels == out_channels
        self.conv1 = conv1x1(in_channels, hidden)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, hidden, kernel_size=3, stride=stride, padding=1, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.conv3 = conv1x1(hidden, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return x + out if self.use_residual else out


# (expansion t, output channels c, repeats n, first stride s) at width 1.0, grouped into stages.
_STAGES = (
    ((1, 16, 1, 1), (None, 24, 2, 1)),
    ((None, 32, 3, 2),),
    ((None, 64, 4, 2), (None, 96, 3, 1)),
    ((None, 160, 3, 2), (None, 320, 1, 1)),
)


class MobileNetV2(nn.Module):
    """CIFAR MobileNetV2 with expansion ``expand_ratio`` (t) and width multiplier ``width_mult``."""

    stage_names = ("layer1", "layer2", "layer3", "layer4")

    def __init__(self, num_classes: int = 10, expand_ratio: int = 6, width_mult: float = 0.5, last_channels: int = 1280):
        super().__init__()
        in_channels = int(32 * width_mult)
        self.conv1 = conv3x3(3, in_channels, stride=2)
        self.bn1 = nn.BatchNorm2d(in_channels)
        for index, stage in enumerate(_STAGES, start=1):
            blocks = []
            for t, c, n, s in stage:
                out_channels = int(c * width_mult)
                for repeat in range(n):
                    stride = s if repeat == 0 else 1
                    blocks.append(InvertedResidual(in_channels, out_channels, stride, t or expand_ratio))
                    in_channels = out_channels
            self.add_module(f"layer{index}", nn.Sequential(*blocks))
        self.conv2 = conv1x1(in_channels, last_channels)
        self.bn2 = nn.BatchNorm2d(last_channels)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(last_channels, num_classes)
        init_conv_bn(self)
        nn.init.normal_(self.fc.weight, 0.0, 0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = F.relu(self.bn2(self.conv2(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


@register_model("mobilenetv2", family="mobilenet")
def mobilenetv2(num_classes: int) -> MobileNetV2:
    """MobileNetV2 for CIFAR, t=6 at half width (RepDistiller's mobile_half) (~0.81M params)."""
    return MobileNetV2(num_classes, expand_ratio=6, width_mult=0.5)
