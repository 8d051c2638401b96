"""Pruning scores: higher = more worth keeping. Computed on the device, no numpy round trip."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

Score = Callable[[Mapping[str, torch.Tensor], "torch.Generator | None"], dict[str, torch.Tensor]]


def magnitude(weights: Mapping[str, torch.Tensor], generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """|w|: the score of Frankle & Carbin's IMP."""
    return {n: w.detach().abs().float() for n, w in weights.items()}


def random(weights: Mapping[str, torch.Tensor], generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Uniform random scores (drawn on the CPU from `generator` so that they are the same on any device)."""
    return {n: torch.rand(w.shape, generator=generator).to(w.device) for n, w in weights.items()}


SCORES: dict[str, Score] = {"magnitude": magnitude, "random": random}
