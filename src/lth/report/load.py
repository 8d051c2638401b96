"""Read a run folder once into a small dataclass: config, finished summaries, their aggregate rows, and what
is missing. Masks and weights are not read here (they can be large); masks.py streams them level by level.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lth.lottery.branches import branch_names
from lth.lottery.results import aggregate
from lth.store import PLAN_FILE


@dataclass
class RunData:
    root: Path
    config: dict[str, Any]
    summaries: list[dict[str, Any]]
    rows: list[dict[str, Any]]  # aggregate(summaries): one per (level, branch)
    levels: list[int]  # levels expected by the config (or found, when the config cannot say)
    replicates: list[int]
    missing: list[str] = field(default_factory=list)  # readable lines, e.g. "level 3: reinit missing for replicate 1"
    label: str = ""  # what differs from the other runs in the report (set by label_runs)
    _metrics: dict[Path, Any] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.root.name

    def pm(self) -> dict[int, float]:
        """P_m (percent) of every level that has a finished training."""
        return {r["level"]: r["remaining_percent"] for r in self.rows}

    def row(self, level: int, branch: str) -> dict[str, Any] | None:
        branch = "dense" if level == 0 else branch
        return next((r for r in self.rows if r["level"] == level and r["branch"] == branch), None)

    def branches(self) -> list[str]:
        """Branch names in aggregate()'s order, level 0's 'dense' first."""
        seen: list[str] = []
        for r in self.rows:
            if r["branch"] not in seen:
                seen.append(r["branch"])
        return seen

    def unit_dir(self, replicate: int, level: int, branch: str) -> Path:
        return self.root / f"rep{replicate}" / f"level{level:02d}" / branch

    def mask_path(self, replicate: int, level: int) -> Path:
        return self.root / f"rep{replicate}" / f"level{level:02d}" / "mask.safetensors"

    def metrics(self, replicate: int, level: int, branch: str) -> dict[str, np.ndarray] | None:
        # Cached per RunData (not process-wide): a run in progress gains files between two reports.
        path = self.unit_dir(replicate, level, branch) / "metrics.csv"
        if path not in self._metrics:
            self._metrics[path] = _read_metrics(path)
        return self._metrics[path]


def _read_metrics(path: Path) -> dict[str, np.ndarray] | None:
    """metrics.csv as float columns; an empty cell (not measured at that step) becomes NaN."""
    if not path.exists():
        return None
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    return {k: np.array([float(r[k]) if r[k] not in ("", None) else math.nan for r in rows]) for k in rows[0]}


def load_run(path: str | Path) -> RunData:
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"run folder {root} does not exist")
    cfg_path = root / "config.json"
    if not cfg_path.exists():
        raise ValueError(f"{root} is not an lth run folder (no config.json); give a folder printed by `lth run`")
    config = json.loads(cfg_path.read_text())["config"]
    # rep[0-9]*, not rep*: the default report folder (<run>/report) also starts with "rep".
    paths = sorted(root.glob("rep[0-9]*/level[0-9]*/*/summary.json"))
    summaries = sorted((json.loads(p.read_text()) for p in paths),
                       key=lambda s: (s["replicate"], s["level"], s["branch"]))
    lot = config.get("lottery", {})
    replicates = list(range(int(lot.get("replicates", 1))))
    found_levels = sorted({int(p.name[5:]) for p in root.glob("rep[0-9]*/level[0-9]*") if p.is_dir()}
                          | {s["level"] for s in summaries})
    # The IMP driver records the levels it runs (PLAN_FILE); without that record (an older run), the config
    # says how many levels there are unless a target P_m set them, and then only the levels on disk are known.
    # Levels on disk beyond the latest request (an earlier, longer one) are reported too.
    plan_path = root / PLAN_FILE
    if plan_path.exists():
        planned = range(len(json.loads(plan_path.read_text())["pm_percent"]))
    elif lot.get("target_pm") is None and "levels" in lot:
        planned = range(int(lot["levels"]) + 1)
    else:
        planned = range(0)
    levels = sorted(set(planned) | set(found_levels))
    run = RunData(root, config, summaries, aggregate(summaries), levels, replicates)
    run.missing = missing_lines(run, tuple(lot.get("controls", ())), int(lot.get("reinit_draws", 1)))
    return run


def missing_lines(run: RunData, controls: tuple[str, ...], reinit_draws: int) -> list[str]:
    """What the config asks for that has no summary.json yet, one line per level (empty levels merged)."""
    done = {(s["replicate"], s["level"], s["branch"]) for s in run.summaries}
    lines, empty = [], []

    def flush() -> None:
        if empty:
            span = f"level {empty[0]}" if len(empty) == 1 else f"levels {empty[0]}-{empty[-1]}"
            lines.append(f"{span}: no finished trainings")
            empty.clear()

    for level in run.levels:
        parts = []
        expected = branch_names(level, controls, reinit_draws)
        if not any((r, level, b) in done for r in run.replicates for b in expected):
            empty.append(level)
            continue
        flush()
        for b in expected:
            lost = [r for r in run.replicates if (r, level, b) not in done]
            if lost:
                who = "replicate" if len(lost) == 1 else "replicates"
                parts.append(f"{'dense' if level == 0 else b} missing for {who} {','.join(map(str, lost))}")
        if parts:
            lines.append(f"level {level}: " + "; ".join(parts))
    flush()
    return lines


# -- labels: what differs between the runs of one report ----------------------------------------------------

def _local_keys() -> set[str]:
    """Dotted config keys that say where/how, not what (hash=False): never a difference worth a label."""
    from lth.config import ExperimentConfig

    out: set[str] = set()

    def walk(cls: Any, prefix: str) -> None:
        for f in fields(cls):
            default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
            if is_dataclass(default):
                walk(type(default), prefix + f.name + ".")
            elif not f.metadata.get("hash", True):
                out.add(prefix + f.name)

    walk(ExperimentConfig, "")
    return out


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v)) or "()"
    return str(v)


def config_differences(runs: list[RunData]) -> list[str]:
    """Dotted keys whose values differ between the runs (local settings such as out_dir left out)."""
    flat = [flatten(r.config) for r in runs]
    local = _local_keys()
    keys = sorted(set().union(*flat) - local)
    return [k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flat}) > 1]


def label_runs(runs: list[RunData], max_keys: int = 3) -> list[str]:
    """Label each run by its values of the differing keys, e.g. "lottery.one_shot=True"; same configs (or a
    single run) fall back to the folder name."""
    keys = config_differences(runs) if len(runs) > 1 else []
    for run in runs:
        flat = flatten(run.config)
        parts = [f"{k}={_fmt(flat.get(k))}" for k in keys[:max_keys]]
        if len(keys) > max_keys:
            parts.append(f"(+{len(keys) - max_keys} more)")
        run.label = ", ".join(parts) if parts else run.name
    if len({r.label for r in runs}) < len(runs):  # two folders with one config: only the folder tells them apart
        for run in runs:
            run.label = f"{run.label} [{run.name}]" if run.label != run.name else run.name
    return keys


def describe_parts(config: dict[str, Any], n_replicates: int) -> list[str]:
    """Short phrases saying what was run: model/dataset, pruning, schedule, training, replicates."""
    model, data = config.get("model", {}), config.get("data", {})
    pr, lot, tr = config.get("prune", {}), config.get("lottery", {}), config.get("train", {})
    name = str(model.get("name", "?"))
    custom = name.startswith("custom:")
    what = name if custom else f"{name} on {data.get('dataset', '?')}"
    if config.get("preset") and config["preset"] not in (name, name.removeprefix("custom:")):
        what = f"{config['preset']}: {what}"
    rate = 100 * float(pr.get("rate", 0))
    pruning = f"{pr.get('strategy', '?')} {pr.get('score', 'magnitude')} pruning {rate:.0f}%/level"
    rewind = lot.get("rewind", "0it")
    mode = ("one-shot" if lot.get("one_shot") else "iterative") + (
        ", reset to θ_0" if rewind in ("0it", "0ep") else f", rewind to {rewind}")
    parts = [what, pruning, mode]
    if not custom:
        parts.append(f"{tr.get('optimizer', '?')} lr {tr.get('lr', '?')}, {tr.get('budget', '?')}")
    parts.append(f"{n_replicates} replicate{'s' if n_replicates != 1 else ''}")
    return parts


def common_title(runs: list[RunData]) -> str:
    """The description phrases shared by every run (the rest is in the curve labels)."""
    parts = [describe_parts(r.config, len(r.replicates)) for r in runs]
    first = parts[0]
    return " · ".join(p for i, p in enumerate(first) if all(len(q) > i and q[i] == p for q in parts[1:]))
