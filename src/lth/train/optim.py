"""Optimizers and learning-rate schedules (a multiplier of the base rate as a function of the step)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from lth.config import TrainConfig
from lth.train.steps import to_iterations


def make_optimizer(params: Iterable[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer of `cfg` over `params`, with PyTorch's fused kernel where it has one.

    fused=True does the whole update in one kernel over all tensors instead of several passes over memory
    (the optimizer step is a visible part of a small network's CPU step; benchmarks/throughput.py compares
    lth with a hand-written loop using plain and fused Adam). Where no fused kernel exists (an unsupported
    device or dtype), foreach=True: one multi-tensor launch per operation. The update rule is the same; the
    rounding of a fused step may differ from a foreach one in the last bit.
    """
    params = list(params)
    try:
        return _make(params, cfg, fused=True)
    except (RuntimeError, ValueError):
        return _make(params, cfg, foreach=True)


def _make(params: list[torch.nn.Parameter], cfg: TrainConfig, **impl) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay, **impl)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **impl)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **impl)
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


def fast_step(optimizer: torch.optim.Optimizer) -> Callable[[], None]:
    """`optimizer.step`, with a fused Adam or AdamW update issued straight to its kernel.

    Optimizer.step does Python work on every call (hooks, grouping tensors by device, flags) around a kernel
    that, for a network as small as LeNet-300-100, is not much longer. This calls the same kernel on the
    same state tensors, the way torch.optim.adam._fused_adam does, so the result and the optimizer's
    state_dict are bit for bit those of optimizer.step() (tests/test_train.py checks this). Anything else
    (other optimizers, several parameter groups or devices, amsgrad, a parameter without a gradient, the
    first step, which creates the state) goes to optimizer.step.
    """
    if not isinstance(optimizer, torch.optim.Adam) or len(optimizer.param_groups) != 1:
        return optimizer.step
    group = optimizer.param_groups[0]
    params = list(group["params"])
    if (not group.get("fused") or group.get("amsgrad") or group.get("maximize") or group.get("capturable")
            or group.get("differentiable") or isinstance(group["lr"], torch.Tensor) or not params
            or len({(p.device, p.dtype) for p in params}) != 1):
        return optimizer.step
    kernel = torch._fused_adamw_ if group.get("decoupled_weight_decay") else torch._fused_adam_

    def step() -> None:
        group = optimizer.param_groups[0]  # looked up each time: load_state_dict replaces both
        grads = [p.grad for p in params]
        states = [optimizer.state.get(p) for p in params]
        if any(g is None or g.is_sparse for g in grads) or any(not s for s in states):
            optimizer.step()
            return
        steps = [s["step"] for s in states]
        torch._foreach_add_(steps, 1)
        beta1, beta2 = group["betas"]
        kernel(params, grads, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states], [], steps,
               amsgrad=False, lr=group["lr"], beta1=float(beta1), beta2=float(beta2),
               weight_decay=group["weight_decay"], eps=group["eps"], maximize=False, grad_scale=None,
               found_inf=None)

    return step
