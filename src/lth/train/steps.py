"""Step counts written as `500it` or `2ep`, resolved against a batch iterator's epoch length."""

from __future__ import annotations

import re

_STEP = re.compile(r"^\s*(\d+)\s*(it|ep)\s*$")


def check_steps(text: str, what: str) -> None:
    """Raise a clear error for a malformed step count (before any work starts)."""
    if not _STEP.match(str(text)):
        raise ValueError(f"{what} must be a step count like '500it' or '2ep', got {text!r}")


def to_iterations(text: str, steps_per_epoch: int, what: str = "step count") -> int:
    """`500it` -> 500; `2ep` -> 2 × steps_per_epoch."""
    m = _STEP.match(str(text))
    if not m:
        raise ValueError(f"{what} must be a step count like '500it' or '2ep', got {text!r}")
    n, unit = int(m.group(1)), m.group(2)
    return n if unit == "it" else n * steps_per_epoch
