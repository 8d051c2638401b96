"""The run hash (the experiment and its non-default, result-determining fields), the hash lth 0.1 gave a
config, and the printed config."""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields, is_dataclass
from typing import Any

from lth.config.sections import ImpConfig, RunConfig

# --------------------------------------------------------------------------------------------------------
# hashing

def hashed_dict(cfg: Any) -> dict[str, Any]:
    """The part of the config that determines results and differs from the defaults: every hashed field
    (metadata without hash=False) whose value is not its default; sections recurse, empty ones are left
    out."""
    out: dict[str, Any] = {}
    default = type(cfg)()
    for f in fields(cfg):
        if not f.metadata.get("hash", True):
            continue
        value = getattr(cfg, f.name)
        if is_dataclass(value):
            sub = hashed_dict(value)
            if sub:
                out[f.name] = sub
        elif value != getattr(default, f.name):
            out[f.name] = value
    return json.loads(json.dumps(out))


def experiment_name(cfg: Any) -> str:
    return getattr(type(cfg), "experiment", type(cfg).__name__)


def config_hash(cfg: Any, length: int = 8) -> str:
    """Short, stable hash of the experiment's name and its result-determining, non-default settings."""
    blob = json.dumps({"experiment": experiment_name(cfg), "config": hashed_dict(cfg)}, sort_keys=True,
                      separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


# The hashed fields of lth 0.1, whose hash covered every one of them at any value. A run folder made then is
# named by that hash; `legacy_hash` recomputes it so that the store can find and adopt such a folder.
_LEGACY_FIELDS = {
    "data": ("dataset", "val_size", "split_seed", "augment"),
    "model": ("name", "init", "hidden", "width", "dropout"),
    "train": ("optimizer", "lr", "momentum", "nesterov", "weight_decay", "batch_size", "budget", "warmup",
              "schedule", "milestones", "gamma", "eval_every", "data_seed"),
    "prune": ("strategy", "rate", "conv_rate", "output_rate", "exclude", "score"),
    "lottery": ("rewind", "one_shot"),
}


def legacy_hash(cfg: Any, length: int = 8) -> str | None:
    """The hash lth 0.1 gave this config (None when the config uses anything lth 0.1 did not have)."""
    if not isinstance(cfg, RunConfig) or type(cfg) not in (RunConfig, ImpConfig):
        return None
    sections = ("data", "model", "train") + (("prune", "lottery") if isinstance(cfg, ImpConfig) else ())
    old: dict[str, Any] = {}
    for name in sections:
        section = getattr(cfg, name)
        values = {f.name: getattr(section, f.name) for f in fields(section) if f.metadata.get("hash", True)}
        if name == "prune":
            if values["criterion"] not in ("magnitude", "random"):
                return None
            values["score"] = values.pop("criterion")
        extra = set(values) - set(_LEGACY_FIELDS[name])
        if any(values[k] != getattr(type(section)(), k) for k in extra):
            return None  # a field added since: no folder of lth 0.1 can hold this config
        old[name] = {k: values[k] for k in _LEGACY_FIELDS[name]}
    old["seed"] = cfg.seed
    blob = json.dumps(json.loads(json.dumps(old)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def format_config(cfg: Any, indent: int = 0) -> str:
    """Readable multi-line rendering for the terminal: sections first, then the top-level settings."""
    pad = "  " * indent
    items = [(f.name, getattr(cfg, f.name)) for f in fields(cfg)]
    # Sections first, compute and executor (how, not what) last among them, then the top-level settings.
    how = ("compute", "executor")
    ordered = ([i for i in items if is_dataclass(i[1]) and i[0] not in how]
               + [i for i in items if i[0] in how] + [i for i in items if not is_dataclass(i[1])])
    lines = []
    for name, value in ordered:
        if is_dataclass(value):
            lines.append(f"{pad}{name}:")
            lines.append(format_config(value, indent + 1))
        else:
            lines.append(f"{pad}{name}: {value!r}")
    return "\n".join(lines)
