"""ShuffleNet V2 (1x) for CIFAR (Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient CNN
Architecture Design", ECCV 2018), as RepDistiller's ``ShuffleNetv2.py`` builds it.

A 1x1 stem to 24 channels (no downsampling), three stages (a stride-2 down unit followed by 3, 7
and 3 basic units) with widths 116-232-464 at 16x16, 8x8 and 4x4, a 1x1 convolution to 1024
channels, global average pooling and a linear classifier.

Module paths: ``conv1``, ``bn1``, ``layer1``..``layer3`` (stage outputs), ``layer2.0`` (the down
unit), ``layer2.3.conv2`` (a basic unit's depthwise conv), ``conv2``, ``bn2``, ``fc``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from featdistill_core.models.layers import channel_shuffle, conv1x1, init_conv_bn
from featdistill_core.models.registry import register_model


def _depthwise3x3(channels: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, kernel_size=3, stride=stride, padding=1, groups=channels, bias=False)


class BasicUnit(nn.Module):
    """Split the channels in half (x1, x2); out = shuffle(concat(x1, branch(x2)), 2).

    branch(x2) = relu(bn3(conv3(bn2(conv2(relu(bn1(conv1(x2)))))))): 1x1 -> depthwise 3x3 -> 1x1.
    """

    def __init__(self, channels: int):
        super().__init__()
        half = channels // 2
        self.conv1 = conv1x1(half, half)
        self.bn1 = nn.BatchNorm2d(half)
        self.conv2 = _depthwise3x3(half, stride=1)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv3 = conv1x1(half, half)
        self.bn3 = nn.BatchNorm2d(half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept, processed = x.chunk(2, dim=1)
        out = F.relu(self.bn1(self.conv1(processed)))
        out = self.bn2(self.conv2(out))
        out = F.relu(self.bn3(self.conv3(out)))
        return channel_shuffle(torch.cat([kept, out], dim=1), 2)


class DownUnit(nn.Module):
    """Spatial down-sampling unit: both branches see the whole input and halve H and W.

    left = relu(bn2(conv2(bn1(conv1(x))))) (depthwise 3x3/2 -> 1x1);
    right = relu(bn5(conv5(bn4(conv4(relu(bn3(conv3(x)))))))) (1x1 -> depthwise 3x3/2 -> 1x1);
    out = shuffle(concat(left, right), 2) with ``out_channels`` channels.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        half = out_channels // 2
        self.conv1 = _depthwise3x3(in_channels, stride=2)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv2 = conv1x1(in_channels, half)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv3 = conv1x1(in_channels, half)
        self.bn3 = nn.BatchNorm2d(half)
        self.conv4 = _depthwise3x3(half, stride=2)
        self.bn4 = nn.BatchNorm2d(half)
        self.conv5 = conv1x1(half, half)
        self.bn5 = nn.BatchNorm2d(half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = self.bn1(self.conv1(x))
        left = F.relu(self.bn2(self.conv2(left)))
        right = F.relu(self.bn3(self.conv3(x)))
        right = self.bn4(self.conv4(right))
        right = F.relu(self.bn5(self.conv5(right)))
        return channel_shuffle(torch.cat([left, right], dim=1), 2)


class ShuffleNetV2(nn.Module):
    """ShuffleNet V2 with the given stage widths, basic-unit counts and head width."""

    stage_names = ("layer1", "layer2", "layer3")

    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int] = (116, 232, 464),
                 units: tuple[int, int, int] = (3, 7, 3), head_channels: int = 1024, stem_channels: int = 24):
        super().__init__()
        self.conv1 = conv1x1(3, stem_channels)
        self.bn1 = nn.BatchNorm2d(stem_channels)
        in_channels = stem_channels
        for index, (width, count) in enumerate(zip(widths, units), start=1):
            stage = [DownUnit(in_channels, width)] + [BasicUnit(width) for _ in range(count)]
            self.add_module(f"layer{index}", nn.Sequential(*stage))
            in_channels = width
        self.conv2 = conv1x1(in_channels, head_channels)
        self.bn2 = nn.BatchNorm2d(head_channels)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(head_channels, num_classes)
        init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = F.relu(self.bn2(self.conv2(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


@register_model("shufflenetv2", family="shufflenet")
def shufflenetv2(num_classes: int) -> ShuffleNetV2:
    """ShuffleNet V2 1x for CIFAR: 3-7-3 units, widths 116-232-464, 1024-channel head (~1.36M params)."""
    return ShuffleNetV2(num_classes)
