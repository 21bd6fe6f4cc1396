"""Optimizer and learning-rate schedule from a run's ``[optim]`` section.

The schedule is stepped once per training step: ``cosine`` anneals from ``lr`` to 0 over the
stage, ``step`` multiplies ``lr`` by ``gamma`` at each epoch in ``milestones`` (the CIFAR recipe:
150, 180, 210 of 240), ``constant`` keeps it.
"""

from __future__ import annotations

import math

import torch

from featdistill_core.config import OptimConfig


def make_optimizer(cfg: OptimConfig, params) -> torch.optim.Optimizer:
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               nesterov=False)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"optim.name: must be 'sgd' or 'adamw'; got {cfg.name!r}")


def lr_factor(cfg: OptimConfig, step: int, steps_per_epoch: int, total_steps: int) -> float:
    """Multiplier of the base learning rate after ``step`` steps (0-based)."""
    if cfg.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))
    if cfg.schedule == "step":
        epoch = step // max(steps_per_epoch, 1)
        return cfg.gamma ** sum(1 for m in cfg.milestones if epoch >= m)
    return 1.0


def make_schedule(optimizer, cfg: OptimConfig, epochs: int, steps_per_epoch: int):
    total = epochs * steps_per_epoch
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(cfg, step, steps_per_epoch, total))
