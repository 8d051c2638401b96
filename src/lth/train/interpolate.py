"""Linear mode connectivity (Frankle et al. 2020): the error along the line between two trained networks.

Two copies of a network trained from the same weights with different data orders are *stable* when the
error does not rise on the straight line between them. The path is (1 − α)·W_a + α·W_b at evenly spaced α
in [0, 1], which is W_a exactly at α = 0 and W_b exactly at α = 1. Two sparse networks with one mask stay
on that mask along the whole line (both are zero wherever it prunes). The error barrier is the highest
error on the path minus the mean of the endpoints' errors: 0 for a flat path, never negative.

Floating-point buffers (BatchNorm's running statistics) are interpolated like the parameters; integer ones
(batch counters) are taken from W_a.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from lth.train.metrics import evaluate


@dataclass(frozen=True)
class Interpolation:
    alphas: list[float]
    errors: list[float]
    """Error (1 − accuracy) at each α."""
    losses: list[float]

    @property
    def barrier(self) -> float:
        return error_barrier(self.errors)


def alphas(points: int) -> list[float]:
    """`points` evenly spaced values from 0 to 1, both included."""
    return torch.linspace(0.0, 1.0, points, dtype=torch.float64).tolist()


def error_barrier(errors: list[float]) -> float:
    """max over the path − mean of the two endpoints."""
    return max(errors) - (errors[0] + errors[-1]) / 2


def blend(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """(1 − α)·a + α·b for floating tensors; the others from a."""
    return {k: (1 - alpha) * v + alpha * b[k] if v.is_floating_point() else v for k, v in a.items()}


@torch.no_grad()
def interpolate(build: Callable[[], nn.Module], a: dict[str, torch.Tensor], b: dict[str, torch.Tensor],
                x: torch.Tensor, y: torch.Tensor, points: int = 30) -> Interpolation:
    """Loss and error of the networks on the line from state dict `a` to `b`, on (x, y)."""
    model = build().to(x.device)
    a = {k: v.to(x.device) for k, v in a.items()}
    b = {k: v.to(x.device) for k, v in b.items()}
    if a.keys() != b.keys():
        raise ValueError("the two networks have different parameters: interpolate networks of one architecture")
    errors, losses = [], []
    for alpha in alphas(points):
        model.load_state_dict(blend(a, b, alpha))
        loss, acc = evaluate(model, x, y)
        errors.append(1.0 - float(acc))
        losses.append(float(loss))
    return Interpolation(alphas(points), errors, losses)
