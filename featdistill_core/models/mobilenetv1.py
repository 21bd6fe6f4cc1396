"""MobileNet-V1 for ImageNet (Howard et al., "MobileNets: Efficient Convolutional Neural Networks for
Mobile Vision Applications", 2017, table 1), width multiplier 1.0, 224x224 inputs.

The student of the ResNet-50 -> MobileNet-V1 row of the ImageNet distillation tables (CRD, ReviewKD,
mdistiller). The layer sequence is mdistiller's ``mdistiller/models/imagenet/mobilenetv1.py``: a 3x3
stride-2 convolution to 32 channels, thirteen depthwise-separable blocks (3x3 depthwise conv + BN +
ReLU, then 1x1 pointwise conv + BN + ReLU), global average pooling and a 1024 -> classes linear layer
(~4.23M parameters at 1000 classes). As there, every activation is ReLU (the paper's too) and the
convolutions have no bias. Two differences: pooling is adaptive (any input side that is a multiple of
32 works, not only 224), and the blocks are grouped into named stages at the points mdistiller takes
its features from, so module paths read like the other models' (mdistiller's checkpoints name the
same tensors ``model.N.M``, so they do not load as they are).

On a 224x224 input:

- ``conv1``, ``bn1``: 32 channels at 112x112
- ``layer1``: blocks 32->64, 64->128 (stride 2), 128->128 -> 128 channels at 56x56
- ``layer2``: blocks 128->256 (stride 2), 256->256 -> 256 channels at 28x28
- ``layer3``: blocks 256->512 (stride 2), five of 512->512 -> 512 channels at 14x14
- ``layer4``: blocks 512->1024 (stride 2), 1024->1024 -> 1024 channels at 7x7

Module paths inside a block: ``layer3.2.conv_dw`` / ``bn_dw`` (depthwise), ``layer3.2.conv_pw`` /
``bn_pw`` (pointwise), ``layer3.2.preact`` (before the block's last ReLU); then ``avgpool`` and ``fc``
(its input is the 1024-wide embedding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from featdistill_core.models.layers import PreActivation, conv1x1, conv3x3, init_conv_bn
from featdistill_core.models.registry import register_model


class DepthwiseSeparable(nn.Module):
    """out = relu(bn_pw(conv_pw(relu(bn_dw(conv_dw(x)))))): a 3x3 depthwise conv (stride ``stride``)
    then a 1x1 pointwise conv to ``out_channels``. ``preact`` (no parameters) outputs ``bn_pw``'s result
    before the final ReLU (mdistiller's ``preact_feats``), for methods that tap pre-ReLU features."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv_dw = nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=stride, padding=1,
                                 groups=in_channels, bias=False)
        self.bn_dw = nn.BatchNorm2d(in_channels)
        self.conv_pw = conv1x1(in_channels, out_channels)
        self.bn_pw = nn.BatchNorm2d(out_channels)
        self.preact = PreActivation("bn_pw")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn_dw(self.conv_dw(x)))
        return F.relu(self.preact(self.bn_pw(self.conv_pw(x))))


# (output channels, stride) of each depthwise-separable block, grouped into the four stages.
_STAGES = (
    ((64, 1), (128, 2), (128, 1)),
    ((256, 2), (256, 1)),
    ((512, 2), (512, 1), (512, 1), (512, 1), (512, 1), (512, 1)),
    ((1024, 2), (1024, 1)),
)


class MobileNetV1(nn.Module):
    """MobileNet-V1 (width 1.0) with a ``num_classes``-way classifier."""

    stage_names = ("layer1", "layer2", "layer3", "layer4")

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = conv3x3(3, 32, stride=2)
        self.bn1 = nn.BatchNorm2d(32)
        in_channels = 32
        for index, stage in enumerate(_STAGES, start=1):
            blocks = []
            for out_channels, stride in stage:
                blocks.append(DepthwiseSeparable(in_channels, out_channels, stride))
                in_channels = out_channels
            self.add_module(f"layer{index}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)
        init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


@register_model("mobilenetv1", family="mobilenet")
def mobilenetv1(num_classes: int) -> MobileNetV1:
    """ImageNet MobileNet-V1, width 1.0, 13 depthwise-separable blocks (4.23M params at 1000 classes)."""
    return MobileNetV1(num_classes)
