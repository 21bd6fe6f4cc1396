"""Small building blocks shared by the CIFAR architectures."""

from __future__ import annotations

import torch
from torch import nn


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1, no bias (a BatchNorm follows)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """1x1 (pointwise) convolution, no bias (a BatchNorm follows)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, groups=groups, bias=False)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle: [N, g*c, H, W] -> view [N, g, c, H, W] -> swap g and c -> [N, c*g, H, W].

    After a grouped convolution it lets the next grouped convolution see channels of every group
    (Zhang et al., "ShuffleNet", CVPR 2018). Returns a new tensor; ``x`` is untouched.
    """
    if groups == 1:
        return x
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class PreActivation(nn.Identity):
    """A parameter-free marker placed on a block's pre-activation (the tensor entering its final ReLU).

    Forward hooks cannot see a value that a block passes to ``F.relu`` directly; this identity makes it
    a module output (``layer2.0.preact``) that methods reading pre-ReLU features (activation
    boundaries, OFD) can tap. It has no parameters or buffers, so state dicts, checkpoints and
    numbers are unchanged. ``batchnorm`` names the sibling BatchNorm (a child of the same block) whose
    affine parameters describe the distribution of the pre-activation, as OFD's ``get_bn_before_relu``
    picks it: ``"bn2"`` of a ResNet basic block.
    """

    def __init__(self, batchnorm: str):
        super().__init__()
        self.batchnorm = batchnorm

    def extra_repr(self) -> str:
        return f"batchnorm={self.batchnorm!r}"


def init_conv_bn(model: nn.Module) -> None:
    """He initialisation for convolutions, gamma=1 / beta=0 for batch norms.

    Conv weights ~ N(0, 2 / (k*k*C_out)) (He et al. 2015, "fan_out" mode, as the CIFAR ResNets of
    RepDistiller use); conv biases, if any, start at zero. Linear layers keep PyTorch's default.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
