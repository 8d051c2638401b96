"""The criterion seat: the context a criterion sees, and the registry."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

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
    input_shape: tuple[int, ...] | None = None
    """The shape of one input example (SynFlow feeds an all-ones input of this shape)."""
    plan: Any = None
    """The PrunePlan the scores are selected by (iterative criteria select between their rounds)."""
    counts: dict[str, int] | int | None = None
    """What the selection keeps: per-layer counts (layer-wise) or one total (global)."""
    extra: dict = field(default_factory=dict)
    """Anything an experiment passes on to its own criteria (e.g. "batches": how many batches to score on)."""

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


@dataclass(frozen=True)
class CriterionSpec:
    """What a criterion needs beyond the weights, and how it is applied."""

    needs: frozenset[str] = frozenset()
    """Context fields it cannot work without (e.g. {"build", "batches"}): an experiment that cannot give
    them refuses the criterion before any training (`check_criterion`)."""
    iterations: int = 1
    """Score-and-select rounds on the way to the target counts, densities on an exponential schedule
    (SynFlow: 100); 1 scores once."""
    global_only: bool = False
    """It chooses each layer's sparsity itself, so it needs one global count (smart_ratio)."""


SPECS: dict[str, CriterionSpec] = {}

# The context fields every caller gives; the others are optional (`CriterionContext`).
ALWAYS = frozenset({"weights", "mask", "names", "generator"})


def criterion(name: str, *, needs: tuple[str, ...] = (), iterations: int = 1,
              global_only: bool = False) -> Callable[[Criterion], Criterion]:
    """Register a criterion under `name` (a decorator). `needs` names the context fields it requires beyond
    weights, mask, names and generator; `iterations` > 1 makes it iterative (score, select, repeat)."""
    unknown = set(needs) - {f for f in CriterionContext.__dataclass_fields__} - ALWAYS
    if unknown:
        raise ValueError(f"criterion {name!r} needs unknown context field(s) {sorted(unknown)}")

    def register(fn: Criterion) -> Criterion:
        if name in CRITERIA and CRITERIA[name] is not fn:
            raise ValueError(f"a pruning criterion named {name!r} is already registered")
        CRITERIA[name] = fn
        SPECS[name] = CriterionSpec(frozenset(needs), iterations, global_only)
        return fn

    return register


def criterion_spec(name: str) -> CriterionSpec:
    get_criterion(name)
    return SPECS.get(name, CriterionSpec())


def check_criterion(name: str, provides: set[str] | frozenset[str], *, strategy: str = "global",
                    where: str = "this experiment", flag: str = "--prune.criterion") -> None:
    """Refuse, before any work, a criterion this experiment cannot feed or select for: unknown, needing a
    context field the experiment does not give (data batches, the model), or choosing per-layer sparsity
    itself under layer-wise selection."""
    spec = criterion_spec(name)
    missing = sorted(spec.needs - set(provides) - ALWAYS)
    if missing:
        what = {"batches": "training batches (data)", "build": "the model's architecture",
                "input_shape": "the input shape", "initial": "θ_0"}
        need = ", ".join(what.get(m, m) for m in missing)
        raise ConfigError(f"pruning criterion {name!r} needs {need}, which {where} does not provide; choose "
                          f"another {flag} (e.g. magnitude or random)")
    if spec.global_only and strategy != "global":
        raise ConfigError(f"pruning criterion {name!r} chooses each layer's sparsity itself, so it needs global "
                          f"selection; use it with global selection (--prune.strategy global, or --pai.scope "
                          "global for prune_at_init)")


def get_criterion(name: str) -> Criterion:
    if name not in CRITERIA:
        raise ConfigError(f"unknown pruning criterion {name!r}; known: {', '.join(sorted(CRITERIA))} "
                          "(--prune.criterion NAME)")
    return CRITERIA[name]
