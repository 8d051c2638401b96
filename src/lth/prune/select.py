"""Selection: turn a criterion's scores into a mask, layer-wise or globally.

Only weights the current mask keeps compete; the pruned ones stay pruned. Ties are broken
deterministically by position (a stable sort), so the same weights always give the same mask.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, replace

import torch
from torch import nn

from lth.config import PruneConfig
from lth.errors import ConfigError
from lth.prune.criteria import CriterionContext, criterion_spec, get_criterion
from lth.prune.mask import Mask
from lth.prune.schedule import global_kept_after, kept_after


@dataclass(frozen=True)
class PrunePlan:
    """Which layers are pruned at which rate, resolved for one model."""

    strategy: str
    rates: dict[str, float]  # layer-wise: per-layer rate; global: the same rate for every pruned layer
    sizes: dict[str, int]  # every prunable weight (pruned or excluded), for P_m accounting
    output: str = ""  # the model's output layer (criteria that treat the classifier apart: smart_ratio)

    @property
    def pruned(self) -> list[str]:
        return list(self.rates)

    @classmethod
    def for_model(cls, model: nn.Module, cfg: PruneConfig) -> "PrunePlan":
        from lth.models import layer_kind, output_names, prunable_names

        names = prunable_names(model)
        params = dict(model.named_parameters())
        sizes = {n: params[n].numel() for n in names}
        for pattern in cfg.exclude:
            if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
                raise ConfigError(f"--prune.exclude pattern {pattern!r} matches no prunable weight; "
                                 f"prunable weights: {', '.join(names)}")
        included = [n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in cfg.exclude)]
        if not included:
            raise ConfigError("--prune.exclude excludes every prunable weight: nothing left to prune")
        outputs = output_names(model)
        out = outputs[-1]  # the classifier, for criteria that treat it apart (smart_ratio)
        if cfg.strategy == "global":
            return cls("global", {n: cfg.rate for n in included}, sizes, out)
        rates = {}
        group_rates = {"conv": cfg.conv_rate, "embedding": cfg.embedding_rate}  # None: same as cfg.rate
        for n in included:
            if n in outputs:
                rates[n] = cfg.output_rate if cfg.output_rate is not None else cfg.rate / 2
            else:
                group_rate = group_rates.get(layer_kind(model, n))
                rates[n] = group_rate if group_rate is not None else cfg.rate
        return cls("layerwise", rates, sizes, out)

    def target_counts(self, mask: Mask, rounds: int = 1) -> dict[str, int] | int:
        kept = mask.kept()
        if self.strategy == "global":
            return global_kept_after(sum(kept[n] for n in self.pruned), next(iter(self.rates.values())), rounds)
        return kept_after(kept, self.rates, rounds)

    def counts_of(self, mask: Mask, like: dict[str, int] | int) -> dict[str, int] | int:
        """The mask's kept counts in the form of `like` (a target_counts result): the pruned layers' total for
        global pruning, else per layer; equal to `like` exactly when the mask has those counts."""
        kept = mask.kept()
        return sum(kept[n] for n in self.pruned) if isinstance(like, int) else {n: kept[n] for n in like}


def keep_top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask keeping the k highest entries of a flat tensor (ties: the earlier index wins; NaN ranks
    below every number but above -inf, so a diverged weight is kept last and the count is always k).

    The same as taking the first k of a stable descending sort, found in linear time and without a host sync:
    everything above the k-th largest score, then the earliest entries equal to it. IMP's criteria, SynFlow's
    100 rounds and edge-popup's every step select with it."""
    n = scores.numel()
    if k <= 0 or k >= n:
        return torch.full_like(scores, k > 0, dtype=torch.bool)
    s = torch.where(torch.isnan(scores), torch.finfo(scores.dtype).min, scores)
    threshold = torch.kthvalue(s, n - k + 1).values
    above = s > threshold
    ties = s == threshold
    return above | (ties & (ties.cumsum(0) <= k - above.sum()))


def _keep_top(scores: torch.Tensor, alive: torch.Tensor, k: int) -> torch.Tensor:
    """keep_top_k among the alive entries only."""
    return keep_top_k(torch.where(alive, scores, torch.full_like(scores, -torch.inf)), k)


def prune(weights: Mapping[str, torch.Tensor], mask: Mask, plan: PrunePlan, *, rounds: int = 1,
          criterion: str = "magnitude", generator: torch.Generator | None = None,
          context: CriterionContext | None = None) -> Mask:
    """The mask after `rounds` rounds of pruning (already-pruned weights stay pruned): `criterion` scores the
    weights, and the plan's rates (layer-wise or global) say how many of the top scores each round keeps.

    `context` gives criteria that need more than `weights` (θ_0, the model, data) what they need; without
    it, a context of `weights`, `mask` and `generator` is made. The context's plan and counts are this
    pruning's (an iterative criterion such as SynFlow selects between its own iterations)."""
    get_criterion(criterion)
    counts = plan.target_counts(mask, rounds)
    if context is None:
        context = CriterionContext(weights=dict(weights), mask=mask, names=plan.pruned,
                                   generator=generator if generator is not None else torch.Generator().manual_seed(0))
    context = replace(context, mask=mask, plan=plan if context.plan is None else context.plan,
                      counts=counts if context.counts is None else context.counts)
    return score_and_select(criterion, context, plan, counts)


def score_and_select(criterion: str, context: CriterionContext, plan: PrunePlan, counts: dict[str, int] | int, *,
                     invert: bool = False) -> Mask:
    """The mask keeping `counts` weights by `criterion`, from `context.mask`.

    An iterative criterion (SynFlow: 100 iterations) scores and selects repeatedly, the kept counts falling
    on an exponential schedule (density d^(j/n) of the start after round j of n, the Synaptic-Flow code's
    `exponential`), each round scoring the network masked by the previous one. `invert` keeps the
    lowest scores instead of the highest, in every round (Frankle et al. 2021's inversion ablation)."""
    score = get_criterion(criterion)
    iterations = criterion_spec(criterion).iterations
    mask = context.mask
    for target in exponential_counts(mask, plan, counts, iterations):
        scores = score(replace(context, mask=mask))
        if invert:
            scores = {n: -s for n, s in scores.items()}
        mask = select(scores, mask, plan, target)
    return mask


def exponential_counts(mask: Mask, plan: PrunePlan, counts: dict[str, int] | int, rounds: int) -> list:
    """Kept counts after each of `rounds` rounds, from the mask's to `counts`, on an exponential schedule
    (the last is exactly `counts`)."""
    if rounds <= 1:
        return [counts]
    kept = mask.kept()

    def step(start: int, end: int, j: int) -> int:
        if start <= 0:
            return 0
        return max(end, round(start * (end / start) ** (j / rounds)))

    if isinstance(counts, int):
        start = sum(kept[n] for n in plan.pruned)
        return [step(start, counts, j) for j in range(1, rounds)] + [counts]
    return [{n: step(kept[n], c, j) for n, c in counts.items()} for j in range(1, rounds)] + [counts]


def select(scores: Mapping[str, torch.Tensor], mask: Mask, plan: PrunePlan, counts: dict[str, int] | int) -> Mask:
    """The mask keeping the `counts` highest-scoring alive weights: per layer (a dict), or over all of the
    plan's pruned layers together (an int, global selection)."""
    new = {n: t.clone() for n, t in mask.items()}
    if plan.strategy == "global":
        flat_s = torch.cat([scores[n].flatten() for n in plan.pruned])
        flat_a = torch.cat([mask[n].flatten().to(flat_s.device) for n in plan.pruned])
        keep = _keep_top(flat_s, flat_a, counts)
        start = 0
        for n in plan.pruned:
            size = mask[n].numel()
            new[n] = keep[start:start + size].view_as(mask[n]).to(mask[n].device)
            start += size
    else:
        for n in plan.pruned:
            s = scores[n].flatten()
            keep = _keep_top(s, mask[n].flatten().to(s.device), counts[n])
            new[n] = keep.view_as(mask[n]).to(mask[n].device)
    return Mask(new)


def random_mask_like(mask: Mask, generator: torch.Generator) -> Mask:
    """A random mask with exactly the same number of kept weights in every layer (the random-pruning control)."""
    out = {}
    for n, t in mask.items():
        k = int(t.sum())
        perm = torch.randperm(t.numel(), generator=generator)
        keep = torch.zeros(t.numel(), dtype=torch.bool)
        keep[perm[:k]] = True
        out[n] = keep.view(t.shape).to(t.device)
    return Mask(out)
