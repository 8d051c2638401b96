"""What each branch of a level starts from.

At every level after the dense one, the ticket and its controls differ only in where they start:
- ticket:        the level's mask on the rewound weights (θ_0, or θ_k with rewinding);
- reinit:        the same mask on a fresh draw from the same initializer (Frankle & Carbin's control);
- random_prune:  a random mask with the ticket's per-layer counts, on the rewound weights.
They are then trained identically (same data order, budget and start step).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch
from torch import nn

from lth.prune import Mask, random_mask_like

CONTROLS = ("reinit", "random_prune")


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from named parts, so every branch, level and replicate has its own stream."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def check_controls(controls: tuple[str, ...]) -> None:
    unknown = [c for c in controls if c not in CONTROLS]
    if unknown:
        raise ValueError(f"unknown control(s) {unknown}; choose from {', '.join(CONTROLS)} "
                         "(e.g. --lottery.controls reinit random_prune, or an empty list for none)")


def branch_names(level: int, controls: tuple[str, ...], reinit_draws: int) -> list[str]:
    """The trainings of a level: the dense network at level 0, the ticket and its controls after."""
    if level == 0:
        return ["ticket"]
    names = ["ticket"]
    for c in controls:
        if c == "reinit":
            names += ["reinit" if d == 0 else f"reinit{d + 1}" for d in range(reinit_draws)]
        else:
            names.append(c)
    return names


def branch_start(branch: str, *, model: nn.Module, rewind_state: dict[str, torch.Tensor], mask: Mask,
                 build: Callable[[int], nn.Module], seed: int, replicate: int, level: int) -> Mask:
    """Load the branch's starting weights into `model` and return the mask it trains under.

    `build(seed)` makes the network with a fresh initialization: the reinit control takes its weights, so
    it draws from exactly the initializer θ_0 came from (also for a user's own model).
    """
    if branch == "ticket":
        model.load_state_dict(rewind_state)
        return mask
    if branch.startswith("reinit"):
        model.load_state_dict(build(derive_seed("reinit", seed, replicate, level, branch)).state_dict())
        return mask
    model.load_state_dict(rewind_state)
    if branch == "random_prune":
        g = torch.Generator().manual_seed(derive_seed("random_prune", seed, replicate, level))
        return random_mask_like(mask, g)
    raise ValueError(f"unknown branch {branch!r}")
