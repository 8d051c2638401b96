"""Frankle & Carbin's criterion, and random scores."""

from __future__ import annotations

import torch

from lth.prune.criteria.base import CriterionContext, criterion


@criterion("magnitude")
def magnitude(ctx: CriterionContext) -> dict[str, torch.Tensor]:
    """|w|: the trained weights' magnitude (IMP's criterion; Zhou et al.'s large_final)."""
    return {n: ctx.weights[n].detach().abs().float() for n in ctx.names}


criterion("large_final")(magnitude)


@criterion("random")
def random(ctx: CriterionContext) -> dict[str, torch.Tensor]:
    """Uniform random scores (drawn on the CPU from the context's generator, so that they are the same on
    any device)."""
    return {n: torch.rand(ctx.weights[n].shape, generator=ctx.generator).to(ctx.weights[n].device)
            for n in ctx.names}
