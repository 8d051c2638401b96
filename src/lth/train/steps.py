"""Step counts written as `500it` or `2ep`, resolved against a batch iterator's epoch length."""

from __future__ import annotations

from lth.config import parse_steps


def check_steps(text: str, what: str) -> None:
    """Raise a clear error for a malformed step count (before any work starts)."""
    parse_steps(text, what)


def to_iterations(text: str, steps_per_epoch: int, what: str = "step count") -> int:
    """`500it` -> 500; `2ep` -> 2 × steps_per_epoch."""
    n, unit = parse_steps(text, what)
    return n if unit == "it" else n * steps_per_epoch
