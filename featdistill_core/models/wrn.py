"""Wide ResNets for CIFAR (Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016).

WRN-d-k: a 3x3 stem convolution (16 channels), three stages of ``n = (d - 4) / 6`` pre-activation
blocks with widths 16k-32k-64k at 32x32, 16x16 and 8x8, a final BN + ReLU, global average pooling
and a linear classifier. Same structure and parameter count as RepDistiller's ``wrn.py`` (dropout 0).

Module paths: ``conv1``, ``layer1``..``layer3`` (stage outputs: pre-activation sums, like the
features RepDistiller takes from WRNs), ``layer2.1.conv1`` (a block's layers), ``layer2.0.shortcut``
(the 1x1 projection), ``bn_final`` (the BN before the last ReLU), ``fc``. Pre-ReLU features (OFD, AB)
are BN outputs here: ``layer3.0.bn1`` is the output of stage 2 normalised just before its ReLU (what
OFD distils for a WRN stage), ``bn_final`` that of stage 3.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from featdistill_core.models.layers import conv1x1, conv3x3, init_conv_bn
from featdistill_core.models.registry import register_model


class PreActBlock(nn.Module):
    """Pre-activation basic block: a = relu(bn1(x)); out = conv2(relu(bn2(conv1(a)))) + shortcut.

    The shortcut is ``x`` itself, or ``shortcut(a)`` (a 1x1 convolution of the activated input)
    when the stride or width changes.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = conv1x1(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = F.relu(self.bn1(x))
        out = self.conv1(activated)
        out = self.conv2(F.relu(self.bn2(out)))
        shortcut = x if self.shortcut is None else self.shortcut(activated)
        return out + shortcut


class WideResNet(nn.Module):
    """WRN-``depth``-``widen_factor`` for 3-channel images; depth = 6n + 4."""

    stage_names = ("layer1", "layer2", "layer3")

    def __init__(self, depth: int, widen_factor: int, num_classes: int = 10):
        super().__init__()
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ValueError(f"WideResNet depth must be 6n+4 with n >= 1 (10, 16, 22, 28, 40, ...), got {depth}")
        blocks_per_stage = (depth - 4) // 6
        widths = (16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        self.conv1 = conv3x3(3, 16)
        self.layer1 = _make_stage(16, widths[0], blocks_per_stage, stride=1)
        self.layer2 = _make_stage(widths[0], widths[1], blocks_per_stage, stride=2)
        self.layer3 = _make_stage(widths[1], widths[2], blocks_per_stage, stride=2)
        self.bn_final = nn.BatchNorm2d(widths[2])
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[2], num_classes)
        init_conv_bn(self)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = F.relu(self.bn_final(x))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def _make_stage(in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [PreActBlock(in_channels, out_channels, stride)]
    layers += [PreActBlock(out_channels, out_channels) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


@register_model("wrn_16_1", family="wrn")
def wrn_16_1(num_classes: int) -> WideResNet:
    """WRN-16-1: 2 pre-activation blocks per stage, widths 16-32-64 (~0.18M params)."""
    return WideResNet(16, 1, num_classes)


@register_model("wrn_16_2", family="wrn")
def wrn_16_2(num_classes: int) -> WideResNet:
    """WRN-16-2: 2 pre-activation blocks per stage, widths 32-64-128 (~0.70M params)."""
    return WideResNet(16, 2, num_classes)


@register_model("wrn_40_1", family="wrn")
def wrn_40_1(num_classes: int) -> WideResNet:
    """WRN-40-1: 6 pre-activation blocks per stage, widths 16-32-64 (~0.57M params)."""
    return WideResNet(40, 1, num_classes)


@register_model("wrn_40_2", family="wrn")
def wrn_40_2(num_classes: int) -> WideResNet:
    """WRN-40-2: 6 pre-activation blocks per stage, widths 32-64-128 (~2.25M params)."""
    return WideResNet(40, 2, num_classes)
