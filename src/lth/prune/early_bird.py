"""Early-bird tickets (You et al. 2020): when has the mask settled?

At every evaluation point of a dense training the magnitude mask of the target sparsity is drawn. A FIFO keeps
the last `window` masks; the ticket is drawn at the first point where the normalized Hamming distance from
the newest mask to each of the others is at most ε (the authors' code stops when none exceeds 0.1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lth.prune.mask import Mask


@dataclass(frozen=True)
class EarlyBird:
    """The draw: `index` of the mask drawn (None if the masks never settled) and, per mask, the largest
    distance from it to the older masks of its window (None until the window is full)."""

    index: int | None
    distances: list[float | None]


def window_distances(masks: Sequence[Mask], window: int = 5) -> list[float | None]:
    """For each mask, the largest normalized Hamming distance to the `window` − 1 masks before it."""
    out: list[float | None] = []
    for i, newest in enumerate(masks):
        if i + 1 < window:
            out.append(None)
        else:
            out.append(max(newest.hamming(old) for old in masks[i + 1 - window:i]))
    return out


def early_bird(masks: Sequence[Mask], eps: float = 0.1, window: int = 5) -> EarlyBird:
    """The first mask whose window has settled: every distance from it to the previous `window` − 1 masks at
    most `eps`."""
    distances = window_distances(masks, window)
    index = next((i for i, d in enumerate(distances) if d is not None and d <= eps), None)
    return EarlyBird(index, distances)
