"""A finished training's summary: a typed record, stored as flat JSON (`summary.json`).

Identity fields say where the training sits (replicate, level, branch, P_m); the training fields are what
lth's loop measures; `extra` holds anything else (the numbers a user's own training function returns, or an
experiment's own measurements). The JSON keeps the historical flat layout and key order, so older run
folders read unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

TRAINING_FIELDS = ("start_step", "iterations", "early_stop_step", "early_stop_val_loss", "early_stop_val_acc",
                   "early_stop_test_acc", "final_val_acc", "final_test_loss", "final_test_acc",
                   "final_train_loss", "final_train_acc")
"""What lth's training loop reports for every training (`lth.train.summarize`), in JSON order."""


@dataclass
class Summary:
    replicate: int
    level: int
    branch: str
    remaining_percent: float
    start_step: int | None = None
    iterations: int | None = None
    early_stop_step: int | None = None
    early_stop_val_loss: float | None = None
    early_stop_val_acc: float | None = None
    early_stop_test_acc: float | None = None
    final_val_acc: float | None = None
    final_test_loss: float | None = None
    final_test_acc: float | None = None
    final_train_loss: float | None = None
    final_train_acc: float | None = None
    seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Summary":
        known = {f.name for f in fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in d.items() if k in known},
                   extra={k: v for k, v in d.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        """Flat, in the historical order: identity, training fields, extra, seconds (None fields left out)."""
        out: dict[str, Any] = {"replicate": self.replicate, "level": self.level, "branch": self.branch,
                               "remaining_percent": self.remaining_percent}
        out.update({k: getattr(self, k) for k in TRAINING_FIELDS if getattr(self, k) is not None})
        out.update(self.extra)
        if self.seconds is not None:
            out["seconds"] = self.seconds
        return out

    # Read access by key, as to the JSON: code written when summaries were plain dicts keeps working.
    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_dict().get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self.to_dict()

    def keys(self):
        return self.to_dict().keys()

    def items(self):
        return self.to_dict().items()

    def numbers(self) -> dict[str, float]:
        """Every numeric field (training fields and extra), for aggregation over replicates."""
        return {k: v for k, v in self.to_dict().items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)
                and k not in ("replicate", "level", "remaining_percent")}


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
