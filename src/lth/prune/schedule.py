"""How many weights each level keeps.

"Pruning rate p" removes round(p × remaining) weights per round, so after n rounds a layer keeps about
(1-p)^n. Python's round (half to even) is the rule that reproduces Frankle & Carbin's LeNet P_m labels
exactly (tests/test_prune.py pins the sequence). One-shot pruning to level L uses the same counts, so a
one-shot level and an iterative level have identical per-layer sparsity.
"""

from __future__ import annotations

from collections.abc import Mapping


def prune_round(kept: int, rate: float) -> int:
    """Weights kept after one round that removes `rate` of the `kept` ones."""
    return kept - round(rate * kept)


def kept_after(kept: Mapping[str, int], rates: Mapping[str, float], rounds: int = 1) -> dict[str, int]:
    """Layer-wise: per-layer kept counts after `rounds` rounds (layers missing from `rates` are not pruned)."""
    out = dict(kept)
    for _ in range(rounds):
        out = {n: prune_round(k, rates[n]) if n in rates else k for n, k in out.items()}
    return out


def global_kept_after(kept: int, rate: float, rounds: int = 1) -> int:
    """Global: total kept count over the pruned layers after `rounds` rounds."""
    for _ in range(rounds):
        kept = prune_round(kept, rate)
    return kept


def pm_schedule(sizes: Mapping[str, int], rates: Mapping[str, float] | float, levels: int,
                pruned: list[str] | None = None) -> list[float]:
    """P_m (percent of all prunable weights remaining) at levels 0..levels.

    `rates` per layer means layer-wise pruning; a single float means global pruning over `pruned` (default:
    every layer in `sizes`). Each level is one more round from the previous one (linear in `levels`).
    """
    total = sum(sizes.values())
    out = []
    if isinstance(rates, Mapping):
        kept = dict(sizes)
        for level in range(levels + 1):
            if level:
                kept = kept_after(kept, rates, 1)
            out.append(100 * sum(kept.values()) / total)
    else:
        pruned = list(sizes) if pruned is None else pruned
        fixed = total - sum(sizes[n] for n in pruned)
        kept_pruned = sum(sizes[n] for n in pruned)
        for level in range(levels + 1):
            if level:
                kept_pruned = global_kept_after(kept_pruned, rates, 1)
            out.append(100 * (fixed + kept_pruned) / total)
    return out


def useful_levels(sizes: Mapping[str, int], rates: Mapping[str, float] | float, pruned: list[str] | None = None,
                  limit: int = 10_000) -> int:
    """The last level at which P_m still changes: beyond it, round(p × remaining) rounds to 0 in every
    layer, so further levels would retrain the same sparsity."""
    total = sum(sizes.values())
    if isinstance(rates, Mapping):
        kept = dict(sizes)
        for level in range(1, limit + 1):
            nxt = kept_after(kept, rates, 1)
            if nxt == kept:
                return level - 1
            kept = nxt
    else:
        pruned = list(sizes) if pruned is None else pruned
        kept_pruned = sum(sizes[n] for n in pruned)
        for level in range(1, limit + 1):
            nxt = global_kept_after(kept_pruned, rates, 1)
            if nxt == kept_pruned:
                return level - 1
            kept_pruned = nxt
    return limit if total else 0
