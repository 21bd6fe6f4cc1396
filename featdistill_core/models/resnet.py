"""CIFAR ResNets (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, section 4.2).

A 3x3 stem convolution, then three stages of ``n`` basic blocks at 32x32, 16x16 and 8x8, then
global average pooling and a linear classifier; depth = 6n + 2. Widths follow RepDistiller's
``resnet.py`` (Tian et al., CRD, ICLR 2020): stem 16 and stages 16-32-64, or 32 and 64-128-256 for
the "x4" variants. Parameter and buffer names match RepDistiller's, so its CIFAR checkpoints load.

Module paths: ``conv1``, ``bn1``, ``layer1``..``layer3`` (stage outputs, after the block's ReLU),
``layer2.1.conv1`` (a block's layers), ``layer2.0.downsample`` (the 1x1 projection shortcut),
``layer2.0.preact`` (the block's output before its ReLU; parameter-free), ``fc``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from featdistill_core.models.layers import PreActivation, conv1x1, conv3x3, init_conv_bn
from featdistill_core.models.registry import register_model


class BasicBlock(nn.Module):
    """out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)).

    ``shortcut`` is the identity, or ``downsample`` (1x1 conv + BN) when the stride or width changes.
    ``preact`` (no parameters) outputs the sum before the final ReLU, for methods that tap pre-ReLU
    features.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))
        self.preact = PreActivation("bn2")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(self.preact(out + shortcut))


class ResNet(nn.Module):
    """CIFAR ResNet of ``depth = 6n + 2`` layers with ``widths = (stem, stage1, stage2, stage3)``."""

    stage_names = ("layer1", "layer2", "layer3")

    def __init__(self, depth: int, widths: tuple[int, int, int, int], num_classes: int = 10):
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(f"ResNet depth must be 6n+2 with n >= 1 (8, 14, 20, 32, ...), got {depth}")
        blocks_per_stage = (depth - 2) // 6
        stem, *stage_widths = widths
        self.conv1 = conv3x3(3, stem)
        self.bn1 = nn.BatchNorm2d(stem)
        self.layer1 = _make_stage(stem, stage_widths[0], blocks_per_stage, stride=1)
        self.layer2 = _make_stage(stage_widths[0], stage_widths[1], blocks_per_stage, stride=2)
        self.layer3 = _make_stage(stage_widths[1], stage_widths[2], blocks_per_stage, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(stage_widths[2], num_classes)
        init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def _make_stage(in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [BasicBlock(in_channels, out_channels, stride)]
    layers += [BasicBlock(out_channels, out_channels) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


_NARROW = (16, 16, 32, 64)
_WIDE = (32, 64, 128, 256)


@register_model("resnet8", family="resnet")
def resnet8(num_classes: int) -> ResNet:
    """CIFAR ResNet-8: 1 basic block per stage, widths 16-32-64 (~0.08M params)."""
    return ResNet(8, _NARROW, num_classes)


@register_model("resnet14", family="resnet")
def resnet14(num_classes: int) -> ResNet:
    """CIFAR ResNet-14: 2 basic blocks per stage, widths 16-32-64 (~0.18M params)."""
    return ResNet(14, _NARROW, num_classes)


@register_model("resnet20", family="resnet")
def resnet20(num_classes: int) -> ResNet:
    """CIFAR ResNet-20: 3 basic blocks per stage, widths 16-32-64 (~0.28M params)."""
    return ResNet(20, _NARROW, num_classes)


@register_model("resnet32", family="resnet")
def resnet32(num_classes: int) -> ResNet:
    """CIFAR ResNet-32: 5 basic blocks per stage, widths 16-32-64 (~0.47M params)."""
    return ResNet(32, _NARROW, num_classes)


@register_model("resnet44", family="resnet")
def resnet44(num_classes: int) -> ResNet:
    """CIFAR ResNet-44: 7 basic blocks per stage, widths 16-32-64 (~0.67M params)."""
    return ResNet(44, _NARROW, num_classes)


@register_model("resnet56", family="resnet")
def resnet56(num_classes: int) -> ResNet:
    """CIFAR ResNet-56: 9 basic blocks per stage, widths 16-32-64 (~0.86M params)."""
    return ResNet(56, _NARROW, num_classes)


@register_model("resnet110", family="resnet")
def resnet110(num_classes: int) -> ResNet:
    """CIFAR ResNet-110: 18 basic blocks per stage, widths 16-32-64 (~1.74M params)."""
    return ResNet(110, _NARROW, num_classes)


@register_model("resnet8x4", family="resnet")
def resnet8x4(num_classes: int) -> ResNet:
    """CIFAR ResNet-8x4: 1 basic block per stage, widths 64-128-256 (~1.23M params)."""
    return ResNet(8, _WIDE, num_classes)


@register_model("resnet32x4", family="resnet")
def resnet32x4(num_classes: int) -> ResNet:
    """CIFAR ResNet-32x4: 5 basic blocks per stage, widths 64-128-256 (~7.43M params)."""
    return ResNet(32, _WIDE, num_classes)
