"""Tiny model factories for tests, loaded as ``tests._nets:NAME`` (package.module:function)."""

from torch import nn


def flat_student(num_classes: int = 10) -> nn.Module:
    """A network with no feature maps at all: feature methods have nowhere to go on it."""
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 16), nn.ReLU(), nn.Linear(16, num_classes))
