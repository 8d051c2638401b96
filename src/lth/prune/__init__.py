"""Masks, pruning criteria, layer-wise and global selection, and P_m schedules."""

from lth.prune.criteria import (
           CRITERIA,
           CriterionContext,
           check_criterion,
           criterion,
           criterion_spec,
           get_criterion,
)
from lth.prune.mask import Mask, MaskError
from lth.prune.schedule import kept_after, pm_schedule, prune_round
from lth.prune.select import (
           PrunePlan,
           prune,
           random_mask_like,
           score_and_select,
           select,
)

__all__ = ["CRITERIA", "CriterionContext", "Mask", "MaskError", "PrunePlan", "check_criterion", "criterion",
           "criterion_spec", "get_criterion", "kept_after", "pm_schedule", "prune", "prune_round", "random_mask_like",
           "score_and_select", "select"]
