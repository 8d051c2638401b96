"""Criteria for pruning at initialization: SNIP (Lee et al. 2019), GraSP (Wang et al. 2020), SynFlow (Tanaka et
al. 2020), magnitude at initialization, and Su et al.'s (2020) smart ratio. Details follow the Synaptic-Flow
reference code (ganguli-lab/Synaptic-Flow, Pruners/pruners.py and prune.py):

- the network is scored in eval mode, with the current mask applied;
- SNIP: |θ ⊙ ∂L/∂θ|, the gradient summed over the scoring batches, normalized by the sum of all scores;
- GraSP: the logits divided by 200; g = Σ ∇L without a graph, Hg = ∇(gᵀ Σ ∇L); the score is θ ⊙ Hg
  normalized by |Σ scores|. The paper removes the highest −θ ⊙ Hg, i.e. it keeps the highest θ ⊙ Hg, which
  is what this criterion returns (higher = keep);
- SynFlow: every parameter (and buffer) replaced by its absolute value, in float64, eval mode; the input is
  one all-ones example; R = the sum of the outputs; score |θ ⊙ ∂R/∂θ|. It is iterative (100 rounds, density
  d^(j/100) after round j, lth.prune.select.score_and_select). It works on a copy of the network, so the
  weights keep their signs;
- smart ratio: a random mask with per-layer keep ratios from layer depth (see `smart_ratio`).

Each returns scores for ctx.names (higher = keep); selection (global by default for pruning at
initialization) turns them into a mask.
"""

from __future__ import annotations

import math
from itertools import islice

import torch
import torch.nn.functional as F
from torch import nn

from lth.errors import ConfigError
from lth.prune.criteria.base import CriterionContext, criterion

GRASP_TEMPERATURE = 200.0
"""GraSP divides the logits by this before the loss (Wang et al.; the reference code's `temp`)."""
GRASP_EPS = 1e-10
SYNFLOW_ROUNDS = 100
DEFAULT_BATCHES = 1
"""Batches SNIP and GraSP score on when the experiment does not say (ctx.extra["batches"])."""
SMART_RATIO_LINEAR_KEEP = 0.3
"""Su et al.'s keep ratio for the linear classifier."""


def _loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the last dimension (sequence logits flattened to tokens), as lth trains."""
    if logits.dim() > 2:
        return F.cross_entropy(logits.float().flatten(0, -2), y.flatten())
    return F.cross_entropy(logits.float(), y)


def _network(ctx: CriterionContext, name: str) -> tuple[nn.Module, list[torch.Tensor]]:
    """A masked copy of the network holding ctx.weights, in eval mode, and its weights named ctx.names."""
    ctx.need("build", name)
    net = ctx.model().eval()
    params = dict(net.named_parameters())
    return net, [params[n] for n in ctx.names]


def _scored(ctx: CriterionContext, name: str):
    """(network, its weights named ctx.names, the scoring batches) on the batches' device, for SNIP and GraSP."""
    net, weights = _network(ctx, name)
    count = int(ctx.extra.get("batches", DEFAULT_BATCHES))
    batches = list(islice(ctx.need("batches", name)(), count))
    net.to(batches[0][0].device)
    return net, weights, batches


def _summed_grads(net: nn.Module, weights: list[torch.Tensor], batches, scale: float = 1.0) -> list[torch.Tensor]:
    """Σ over the batches of ∇ cross-entropy(net(x) / scale), no graph kept."""
    total = [torch.zeros_like(w) for w in weights]
    for x, y in batches:
        for t, g in zip(total, torch.autograd.grad(_loss(net(x) / scale, y), weights)):
            t += g
    return total


def _normalized(scores: list[torch.Tensor], norm: torch.Tensor) -> list[torch.Tensor]:
    return [s / norm for s in scores]


@criterion("snip", needs=("build", "batches"))
def snip(ctx: CriterionContext) -> dict[str, torch.Tensor]:
    """SNIP: |θ ⊙ ∂L/∂θ| on a few training batches (connection sensitivity, Lee et al. 2019)."""
    net, weights, batches = _scored(ctx, "snip")
    grads = _summed_grads(net, weights, batches)
    scores = [(w.detach() * g).abs() for w, g in zip(weights, grads)]
    norm = sum(s.sum() for s in scores)
    return dict(zip(ctx.names, _normalized(scores, norm if norm > 0 else torch.ones(()))))


@criterion("grasp", needs=("build", "batches"))
def grasp(ctx: CriterionContext) -> dict[str, torch.Tensor]:
    """GraSP: keeps the highest θ ⊙ Hg (removes the highest −θ ⊙ Hg), logits / 200 (Wang et al. 2020)."""
    net, weights, batches = _scored(ctx, "grasp")
    stopped = _summed_grads(net, weights, batches, GRASP_TEMPERATURE)  # g = Σ ∇L, no graph
    hg = [torch.zeros_like(w) for w in weights]
    for x, y in batches:  # Hg = ∇(gᵀ ∇L), summed over the batches
        grads = torch.autograd.grad(_loss(net(x) / GRASP_TEMPERATURE, y), weights, create_graph=True)
        inner = sum((s * g).sum() for s, g in zip(stopped, grads))
        for total, h in zip(hg, torch.autograd.grad(inner, weights)):
            total += h
    scores = [w.detach() * h for w, h in zip(weights, hg)]
    norm = sum(s.sum() for s in scores).abs() + GRASP_EPS
    return dict(zip(ctx.names, _normalized(scores, norm)))


@criterion("synflow", needs=("build", "input_shape"), iterations=SYNFLOW_ROUNDS)
def synflow(ctx: CriterionContext) -> dict[str, torch.Tensor]:
    """SynFlow: |θ ⊙ ∂R/∂θ|, R the summed output of |θ| on an all-ones input; data-free, 100 rounds."""
    net, _ = _network(ctx, "synflow")
    if any(isinstance(m, nn.Embedding) for m in net.modules()):
        raise ConfigError("pruning criterion 'synflow' feeds an all-ones input, which a model of token ids "
                          "cannot take; choose another --prune.criterion for this model")
    net = net.double()
    with torch.no_grad():  # linearize: |θ| everywhere (the copy's signs are dropped; θ_0 keeps its own)
        for t in net.state_dict().values():
            if t.is_floating_point():
                t.abs_()
    params = dict(net.named_parameters())
    weights = [params[n] for n in ctx.names]
    device = weights[0].device
    ones = torch.ones((1, *ctx.need("input_shape", "synflow")), dtype=torch.float64, device=device)
    grads = torch.autograd.grad(net(ones).sum(), weights)
    return {n: (w.detach() * g).abs() for n, w, g in zip(ctx.names, weights, grads)}


def smart_ratio_counts(sizes: dict[str, int], total: int, output: str | None,
                       linear_keep: float = SMART_RATIO_LINEAR_KEEP) -> dict[str, int]:
    """Per-layer kept counts of Su et al.'s smart ratio, summing exactly to `total`.

    The classifier (`output`) keeps `linear_keep` of its weights (less if the budget is smaller); the other
    layers, in order l = 1..L, keep fractions proportional to (L−l+1)² + (L−l+1), scaled so the counts fill
    the budget. A layer whose fraction would exceed 1 keeps all its weights, and the excess is spread over
    the others in the same proportions (water-filling; the reference code moves it to the next layers in
    order)."""
    names = list(sizes)
    counts = {n: 0 for n in names}
    budget = total
    apart = output if output in sizes and len(names) > 1 else None
    if apart is not None:
        counts[apart] = min(round(linear_keep * sizes[apart]), budget)
        budget -= counts[apart]
    body = [n for n in names if n != apart]
    depth = len(body)
    weight = {n: (depth - i) ** 2 + (depth - i) for i, n in enumerate(body)}
    fraction: dict[str, float] = {}
    free = list(body)
    left = float(budget)
    while free:  # water-filling: saturate layers at 1, rescale the rest
        denom = sum(weight[n] * sizes[n] for n in free)
        if denom == 0:  # nothing left to fill (layers with no alive weight)
            fraction.update({n: 0.0 for n in free})
            break
        scale = left / denom
        full = [n for n in free if weight[n] * scale >= 1]
        if not full:
            fraction.update({n: weight[n] * scale for n in free})
            break
        for n in full:
            fraction[n] = 1.0
            left -= sizes[n]
            free.remove(n)
    exact = {n: fraction[n] * sizes[n] for n in body}
    floors = {n: min(sizes[n], math.floor(v)) for n, v in exact.items()}
    short = budget - sum(floors.values())
    # Largest remainders get the weights rounding left over, so the total is exactly the budget.
    for n in sorted(body, key=lambda n: (-(exact[n] - floors[n]), body.index(n))):
        if short <= 0:
            break
        if floors[n] < sizes[n]:
            floors[n] += 1
            short -= 1
    counts.update(floors)
    return counts


@criterion("smart_ratio", needs=("plan", "counts"), global_only=True)
def smart_ratio(ctx: CriterionContext) -> dict[str, torch.Tensor]:
    """Su et al. 2020: random positions, per-layer keep ratios ∝ (L−l+1)² + (L−l+1), classifier 30%."""
    plan, total = ctx.need("plan", "smart_ratio"), ctx.need("counts", "smart_ratio")
    if not isinstance(total, int):
        raise ConfigError("pruning criterion 'smart_ratio' chooses each layer's sparsity itself, so it needs "
                          "global selection (--prune.strategy global, or --pai.scope global)")
    alive = {n: int(ctx.mask[n].sum()) for n in ctx.names}
    output = getattr(plan, "output", None)  # None when the classifier is not pruned (excluded)
    counts = smart_ratio_counts(alive, total, output)
    out = {}
    for n in ctx.names:
        # Score 1 for a random subset of the alive weights of the layer's size, 0 elsewhere: global selection
        # of exactly `total` then keeps exactly these.
        flat = ctx.mask[n].flatten().cpu()
        idx = torch.nonzero(flat).flatten()
        chosen = idx[torch.randperm(len(idx), generator=ctx.generator)[:counts[n]]]
        score = torch.zeros(flat.numel())
        score[chosen] = 1.0
        out[n] = score.view(ctx.mask[n].shape).to(ctx.weights[n].device)
    return out
