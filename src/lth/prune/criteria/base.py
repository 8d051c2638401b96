"""The criterion seat: the context a criterion sees, and the registry."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from lth.errors import ConfigError
from lth.prune.mask import Mask


@dataclass
class CriterionContext:
    """Everything a criterion may look at. Only `weights`, `mask`, `names` and `generator` are always there;
    the others are None where the caller has nothing to give (a criterion that needs one says so)."""

    weights: dict[str, torch.Tensor]
    """The weights being pruned, by name: the trained weights for IMP, θ_0 when pruning at initialization."""
    mask: Mask
    """The current mask: weights it has pruned stay pruned whatever their score."""
    names: list[str]
    """The tensors this pruning scores (the plan's pruned layers)."""
    generator: torch.Generator
    """Seeded (lth.seeds "prune"): a criterion's randomness comes from here, so masks are reproducible."""
    initial: dict[str, torch.Tensor] | None = None
    """θ_0: the network's weights at initialization (the replicate's init)."""
    build: Callable[[], nn.Module] | None = None
    """Makes a fresh network of the architecture (for criteria that run the model, e.g. gradient scores)."""
    batches: Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]] | None = None
    """Yields training batches in a seeded order (for criteria that need data)."""
    extra: dict = field(default_factory=dict)
    """Anything an experiment passes on to its own criteria."""

    def need(self, what: str, criterion: str) -> object:
        value = getattr(self, what)
        if value is None:
            raise ConfigError(f"pruning criterion {criterion!r} needs {what} (see CriterionContext), which this "
                              "experiment does not provide; choose another --prune.criterion")
        return value

    def model(self, weights: dict[str, torch.Tensor] | None = None) -> nn.Module:
        """A fresh network holding `weights` (default: `self.weights` over its own initialization), masked."""
        build = self.need("build", "this")
        net = build()
        state = net.state_dict()
        state.update(weights if weights is not None else self.weights)
        net.load_state_dict(state)
        self.mask.apply_(net)
        return net


Criterion = Callable[[CriterionContext], dict[str, torch.Tensor]]
"""Scores for ctx.names (higher = keep), each shaped like its weight."""

CRITERIA: dict[str, Criterion] = {}


def criterion(name: str) -> Callable[[Criterion], Criterion]:
    """Register a criterion under `name` (a decorator)."""
    def register(fn: Criterion) -> Criterion:
        if name in CRITERIA and CRITERIA[name] is not fn:
            raise ValueError(f"a pruning criterion named {name!r} is already registered")
        CRITERIA[name] = fn
        return fn

    return register


def get_criterion(name: str) -> Criterion:
    if name not in CRITERIA:
        raise ConfigError(f"unknown pruning criterion {name!r}; known: {', '.join(sorted(CRITERIA))} "
                          "(--prune.criterion NAME)")
    return CRITERIA[name]
