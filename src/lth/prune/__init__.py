"""Masks, pruning scores, layer-wise and global selection, and P_m schedules."""

from lth.prune.mask import Mask, MaskError
from lth.prune.schedule import kept_after, pm_schedule, prune_round
from lth.prune.scores import SCORES
from lth.prune.select import PrunePlan, prune, random_mask_like

__all__ = ["Mask", "MaskError", "PrunePlan", "SCORES", "kept_after", "pm_schedule", "prune",
           "prune_round", "random_mask_like"]
