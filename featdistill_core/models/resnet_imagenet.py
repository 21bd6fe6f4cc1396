"""ImageNet ResNets (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, table 1).

A 7x7 stride-2 stem convolution, a 3x3 stride-2 max pool, four stages at 1/4, 1/8, 1/16 and 1/32
of the input side (56, 28, 14, 7 at 224), global average pooling and a linear classifier.
ResNet-18/34 stack basic blocks (two 3x3 convolutions), ResNet-50 bottlenecks (1x1 - 3x3 - 1x1,
four times wider out than in). These are the networks of the ImageNet tables of the distillation
literature (CRD/RepDistiller, mdistiller, ReviewKD: ResNet-34 -> ResNet-18, ResNet-50 ->
MobileNet-V1), which take them from torchvision; this file is written without torchvision.

Where the paper and torchvision differ, torchvision is followed (it is what those tables trained):
a bottleneck downsamples in its 3x3 convolution, not in the first 1x1 ("ResNet v1.5"; the parameter
count is the same), and projection shortcuts (1x1 conv + BN) are used only where the shape changes
(option B of the paper). Parameter and buffer names are torchvision's (``conv1``, ``bn1``,
``layer1``..``layer4``, ``layer2.0.downsample.0``, ``fc``), so a torchvision ImageNet state dict
loads into these models unchanged.

Module paths: ``conv1``, ``bn1``, ``maxpool``, ``layer1``..``layer4`` (stage outputs, after the last
block's ReLU), ``layer3.1.conv2`` (a block's layers), ``layer3.1.preact`` (a block's output before its
ReLU; parameter-free), ``avgpool``, ``fc`` (its input is the embedding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from featdistill_core.models.layers import PreActivation, conv1x1, conv3x3, init_conv_bn
from featdistill_core.models.registry import register_model
from featdistill_core.models.resnet import BasicBlock


class Bottleneck(nn.Module):
    """out = relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x)).

    ``conv1`` is 1x1 to ``width`` channels, ``conv2`` 3x3 (stride ``stride``), ``conv3`` 1x1 to
    ``4 * width``; ``downsample`` (1x1 conv + BN) replaces the identity shortcut when shapes change.
    ``preact`` (no parameters) outputs the sum before the final ReLU, for methods that tap pre-ReLU
    features (its BatchNorm is ``bn3``).
    """

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = conv1x1(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))
        self.preact = PreActivation("bn3")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(self.preact(out + shortcut))


class ImageNetResNet(nn.Module):
    """ResNet for 224x224 inputs (any side >= 32 works) with ``blocks`` per stage of ``block`` type."""

    stage_names = ("layer1", "layer2", "layer3", "layer4")

    def __init__(self, block: str, blocks: tuple[int, int, int, int], num_classes: int = 1000):
        super().__init__()
        if block not in ("basic", "bottleneck"):
            raise ValueError(f"block must be 'basic' or 'bottleneck'; got {block!r}")
        expansion = Bottleneck.expansion if block == "bottleneck" else 1
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_channels = 64
        for index, (width, count) in enumerate(zip((64, 128, 256, 512), blocks), start=1):
            stride = 1 if index == 1 else 2
            layers: list[nn.Module] = []
            for repeat in range(count):
                s = stride if repeat == 0 else 1
                if block == "bottleneck":
                    layers.append(Bottleneck(in_channels, width, s))
                else:
                    layers.append(BasicBlock(in_channels, width, s))
                in_channels = width * expansion
            self.add_module(f"layer{index}", nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512 * expansion, num_classes)
        init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


@register_model("resnet18", family="resnet-imagenet")
def resnet18(num_classes: int) -> ImageNetResNet:
    """ImageNet ResNet-18: basic blocks 2-2-2-2, widths 64-128-256-512 (11.69M params at 1000 classes)."""
    return ImageNetResNet("basic", (2, 2, 2, 2), num_classes)


@register_model("resnet34", family="resnet-imagenet")
def resnet34(num_classes: int) -> ImageNetResNet:
    """ImageNet ResNet-34: basic blocks 3-4-6-3, widths 64-128-256-512 (21.80M params at 1000 classes)."""
    return ImageNetResNet("basic", (3, 4, 6, 3), num_classes)


@register_model("resnet50", family="resnet-imagenet")
def resnet50(num_classes: int) -> ImageNetResNet:
    """ImageNet ResNet-50: bottlenecks 3-4-6-3, outputs 256-512-1024-2048 (25.56M params at 1000 classes)."""
    return ImageNetResNet("bottleneck", (3, 4, 6, 3), num_classes)
