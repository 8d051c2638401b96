"""Pruning criteria: what a level keeps. A criterion scores every prunable weight (higher = more worth
keeping); layer-wise or global selection (lth.prune.select) then keeps the top scores at the plan's rates.

A criterion is a function of a `CriterionContext`, registered by name:

    from lth.prune import criterion

    @criterion("my_score")
    def my_score(ctx):
        return {n: (ctx.weights[n] - ctx.initial[n]).abs() for n in ctx.names}

after which `--prune.criterion my_score` (or PruneConfig(criterion="my_score")) uses it. Adding one to lth
is one file in this folder plus its import line below.
"""

from __future__ import annotations

# The built-in criteria: importing a module registers its criteria.
from lth.prune.criteria import init, magnitude, zhou  # noqa: E402,F401
from lth.prune.criteria.base import (
    CRITERIA,
    SPECS,
    Criterion,
    CriterionContext,
    CriterionSpec,
    check_criterion,
    criterion,
    criterion_spec,
    get_criterion,
)

__all__ = ["CRITERIA", "SPECS", "Criterion", "CriterionContext", "CriterionSpec", "check_criterion", "criterion",
           "criterion_spec", "get_criterion"]
