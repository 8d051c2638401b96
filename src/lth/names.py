"""The vocabulary shared by every layer: branch names and the fields of a training's summary.

Branch names are also folder names in a run (`rep0/level03/reinit/`), so they never change.
"""

from __future__ import annotations

DENSE = "dense"
"""Level 0, the unpruned network, as reports show it (IMP stores it as the level-0 `ticket`)."""
TICKET = "ticket"
"""The level's mask applied to θ_0 (or θ_k)."""
REINIT = "reinit"
"""The same mask on a fresh draw from the same initializer (reinit2, reinit3, ... for further draws)."""
RANDOM_PRUNE = "random_prune"
"""A random mask with the ticket's per-layer counts, on θ_0 (or θ_k)."""

CONTROLS = (REINIT, RANDOM_PRUNE)
"""The IMP controls `--lottery.controls` accepts."""


def is_reinit(branch: str) -> bool:
    """reinit, reinit2, reinit3, ...: the draws of the reinitialization control."""
    return branch == REINIT or (branch.startswith(REINIT) and branch[len(REINIT):].isdigit())


def reinit_branch(draw: int) -> str:
    """Branch name of reinitialization draw `draw` (0-based): reinit, reinit2, ..."""
    return REINIT if draw == 0 else f"{REINIT}{draw + 1}"


def display_branch(level: int, branch: str) -> str:
    """The name tables and figures show: the level-0 ticket is the dense network. Other level-0 branches (an
    untrained network, say) keep their names."""
    return DENSE if level == 0 and branch == TICKET else branch


def is_reset(rewind: str) -> bool:
    """Whether `--lottery.rewind` resets to θ_0 (0it, 0ep) instead of rewinding to a later θ_k."""
    text = str(rewind).strip().replace(" ", "")
    return text in ("0it", "0ep")
