"""The mask criteria of Zhou et al. 2019, "Deconstructing lottery tickets" (w_i: the weight at
initialization, θ_0; w_f: the trained weight). large_final (|w_f|) and random are in magnitude.py."""

from __future__ import annotations

import torch

from lth.prune.criteria.base import CriterionContext, criterion


def _pairs(ctx: CriterionContext, name: str):
    initial = ctx.need("initial", name)
    for n in ctx.names:
        yield n, initial[n].detach().float().to(ctx.weights[n].device), ctx.weights[n].detach().float()


@criterion("small_final")
def small_final(ctx: CriterionContext) -> dict[str, torch.Tensor]:
    """−|w_f|: keeps the smallest trained weights (a control that should do badly)."""
    return {n: -ctx.weights[n].detach().abs().float() for n in ctx.names}


@criterion("large_init", needs=("initial",))
def large_init(ctx: CriterionContext) -> dict[str, torch.Tensor]:
    """|w_i|: keeps the weights that were largest at initialization."""
    return {n: wi.abs() for n, wi, _ in _pairs(ctx, "large_init")}


# Frankle et al. 2021's name for the same score, as a pruning-at-initialization baseline.
criterion("magnitude_init", needs=("initial",))(large_init)


@criterion("magnitude_increase", needs=("initial",))
def magnitude_increase(ctx: CriterionContext) -> dict[str, torch.Tensor]:
    """|w_f| − |w_i|: keeps the weights whose magnitude grew most in training."""
    return {n: wf.abs() - wi.abs() for n, wi, wf in _pairs(ctx, "magnitude_increase")}


@criterion("movement", needs=("initial",))
def movement(ctx: CriterionContext) -> dict[str, torch.Tensor]:
    """|w_f − w_i|: keeps the weights that moved furthest in training."""
    return {n: (wf - wi).abs() for n, wi, wf in _pairs(ctx, "movement")}


def _alive_rank(values: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """Each entry's rank among the alive entries by value (0 = smallest), as a fraction of the tensor's size;
    pruned entries rank below every alive one. Ties: the earlier position ranks lower."""
    flat = torch.where(alive.flatten(), values.flatten(), torch.full_like(values.flatten(), -torch.inf))
    order = torch.argsort(flat, stable=True)
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(len(order), device=order.device)
    return (ranks.float() / max(1, len(order))).view_as(values)


@criterion("large_init_large_final", needs=("initial",))
def large_init_large_final(ctx: CriterionContext) -> dict[str, torch.Tensor]:
    """Keeps weights that rank among the largest both at initialization and after training: the score is the
    lower of a weight's two magnitude ranks (within its tensor), so keeping the top k scores keeps exactly
    the intersection of the top-q by |w_i| and the top-q by |w_f|, with q as small as gives k weights."""
    out = {}
    for n, wi, wf in _pairs(ctx, "large_init_large_final"):
        alive = ctx.mask[n].to(wf.device)
        out[n] = torch.minimum(_alive_rank(wi.abs(), alive), _alive_rank(wf.abs(), alive))
    return out
