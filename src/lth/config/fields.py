"""Field markers and the small checks the config sections share."""

from __future__ import annotations

import math
from dataclasses import field
from typing import Any

from lth.errors import ConfigError

STEP_HELP = "a step count like '500it' or '2ep'"


def _local(default: Any, doc: str = "") -> Any:
    """A field that says where or how to compute, not what: it is left out of the run hash."""
    return field(default=default, metadata={"hash": False, "doc": doc})


def _extent(default: Any) -> Any:
    """A field that says how much of an experiment to run (levels, replicates, controls), not what any one
    training computes: every seed derives from (seed, replicate, level, branch). It is left out of the run
    hash, so asking for more levels, replicates or controls extends the existing run instead of redoing it."""
    return field(default=default, metadata={"hash": False})


def parse_steps(text: str, what: str) -> tuple[int, str]:
    """(count, unit) of a step count `500it` / `2ep`; a malformed one is a ConfigError naming `what`."""
    import re

    m = re.match(r"^\s*(\d+)\s*(it|ep)\s*$", str(text))
    if not m:
        raise ConfigError(f"{what} must be {STEP_HELP}, got {text!r}")
    return int(m.group(1)), m.group(2)


def _positive_finite(value: float, flag: str, zero_ok: bool = False) -> None:
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        kind = "a finite number >= 0" if zero_ok else "a finite number > 0"
        raise ConfigError(f"{flag} must be {kind}, got {value}")
