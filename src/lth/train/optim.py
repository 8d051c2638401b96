"""Optimizers and learning-rate schedules (a multiplier of the base rate as a function of the step)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from lth.config import TrainConfig
from lth.train.steps import to_iterations


def make_optimizer(params: Iterable[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    params = list(params)
    # foreach=True: one fused kernel launch per step over all tensors instead of one per tensor.
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay, foreach=True)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose sgd, adam or adamw")


def lr_factor(cfg: TrainConfig, steps_per_epoch: int, total: int) -> Callable[[int], float]:
    """Multiplier of cfg.lr at a given step: linear warmup from 0, then the schedule."""
    warmup = to_iterations(cfg.warmup, steps_per_epoch, "--train.warmup")
    milestones = sorted(to_iterations(m, steps_per_epoch, "--train.milestones") for m in cfg.milestones)

    def factor(step: int) -> float:
        f = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
        if cfg.schedule == "multistep":
            f *= cfg.gamma ** sum(step >= m for m in milestones)
        elif cfg.schedule == "cosine":
            f *= 0.5 * (1 + math.cos(math.pi * min(step, total) / max(1, total)))
        return f

    return factor


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
