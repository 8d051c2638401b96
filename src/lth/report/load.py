"""Read a run folder once, through its RunStore, into a small dataclass: config, finished summaries, their
aggregate rows, and what is missing. Masks and weights are not read here (they can be large); masks.py
streams them level by level.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lth.experiments import EXPERIMENTS
from lth.experiments.results import aggregate
from lth.names import display_branch
from lth.store import RunStore, Unit


@dataclass
class RunData:
    store: RunStore
    config: dict[str, Any]
    experiment: str
    summaries: list[dict[str, Any]]
    rows: list[dict[str, Any]]  # aggregate(summaries): one per (level, branch)
    levels: list[int]  # levels expected by the config (or found, when the config cannot say)
    replicates: list[int]
    missing: list[str] = field(default_factory=list)  # readable lines, e.g. "level 3: reinit missing for replicate 1"
    label: str = ""  # what differs from the other runs in the report (set by label_runs)
    _metrics: dict[Path, Any] = field(default_factory=dict, repr=False)

    @property
    def root(self) -> Path:
        return self.store.root

    @property
    def name(self) -> str:
        return self.root.name

    def pm(self) -> dict[int, float]:
        """P_m (percent) of every level that has a finished training."""
        return {r["level"]: r["remaining_percent"] for r in self.rows}

    def row(self, level: int, branch: str) -> dict[str, Any] | None:
        branch = display_branch(level, branch)
        return next((r for r in self.rows if r["level"] == level and r["branch"] == branch), None)

    def branches(self) -> list[str]:
        """Branch names in aggregate()'s order, level 0's 'dense' first."""
        seen: list[str] = []
        for r in self.rows:
            if r["branch"] not in seen:
                seen.append(r["branch"])
        return seen

    def unit_dir(self, replicate: int, level: int, branch: str) -> Path:
        return self.store.unit_dir(Unit(replicate, level, branch))

    def mask_path(self, replicate: int, level: int) -> Path:
        return self.store.mask_path(replicate, level)

    def init_path(self, replicate: int) -> Path:
        return self.store.init_path(replicate)

    def final_path(self, replicate: int, level: int, branch: str) -> Path:
        return self.store.final_path(Unit(replicate, level, branch))

    def metrics(self, replicate: int, level: int, branch: str) -> dict[str, np.ndarray] | None:
        """A training's metrics as float columns (NaN where a value was not measured); None without any.
        Cached per RunData (not process-wide): a run in progress gains files between two reports."""
        unit = Unit(replicate, level, branch)
        if unit not in self._metrics:
            rows = self.store.metrics(unit)
            self._metrics[unit] = {k: np.array([math.nan if r[k] is None else r[k] for r in rows]) for k in rows[0]} \
                if rows else None
        return self._metrics[unit]


def load_run(path: str | Path) -> RunData:
    store = RunStore.open(path)
    record = store.record()
    config, name = record["config"], record["experiment"]
    summaries = [s.to_dict() for s in store.summaries()]
    lot = config.get("lottery", {})
    # IMP's replicates are lottery.replicates; another experiment's are in its own section.
    count = next((sec["replicates"] for sec in config.values() if isinstance(sec, dict) and "replicates" in sec), 1)
    replicates = list(range(int(count)))
    found_levels = sorted(set(store.levels_on_disk()) | {s["level"] for s in summaries})
    # The IMP driver records the levels it runs (plan.json); without that record (an older run), the config
    # says how many levels there are unless a target P_m set them, and then only the levels on disk are known.
    # Levels on disk beyond the latest request (an earlier, longer one) are reported too.
    plan = store.plan()
    if plan is not None and isinstance(plan.get("levels"), list):  # an experiment that runs some levels only
        planned = [int(lv) for lv in plan["levels"]]
    elif plan is not None and isinstance(plan.get("pm_percent"), list):
        planned = range(len(plan["pm_percent"]))
    elif name == "imp" and lot.get("target_pm") is None and "levels" in lot:
        planned = range(int(lot["levels"]) + 1)
    elif name == "train":
        planned = range(1)
    else:
        planned = range(0)
    levels = sorted(set(planned) | set(found_levels))
    run = RunData(store, config, name, summaries, aggregate(summaries), levels, replicates)
    run.missing = missing_lines(run)
    return run


def expected_branches(run: RunData, level: int) -> list[str]:
    experiment = EXPERIMENTS.get(run.experiment)
    if experiment is None or experiment.branches is None:
        return []
    return experiment.branches(run.config, level)


def missing_lines(run: RunData) -> list[str]:
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
        expected = expected_branches(run, level)
        if run.experiment in EXPERIMENTS and EXPERIMENTS[run.experiment].branches is not None and not expected:
            continue  # a level the run does not ask for (e.g. instability of levels 0, 3 and 7 only)
        if not any((r, level, b) in done for r in run.replicates for b in expected):
            empty.append(level)
            continue
        flush()
        for b in expected:
            lost = [r for r in run.replicates if (r, level, b) not in done]
            if lost:
                who = "replicate" if len(lost) == 1 else "replicates"
                parts.append(f"{display_branch(level, b)} missing for {who} {','.join(map(str, lost))}")
        if parts:
            lines.append(f"level {level}: " + "; ".join(parts))
    flush()
    return lines


# -- labels: what differs between the runs of one report ----------------------------------------------------

def _local_keys() -> set[str]:
    """Dotted config keys that say where/how, not what (hash=False): never a difference worth a label."""
    out: set[str] = set()

    def walk(cls: Any, prefix: str) -> None:
        for f in fields(cls):
            default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
            local = not f.metadata.get("hash", True)
            if is_dataclass(default) and local:  # a whole local section (compute)
                out.update(prefix + f.name + "." + k for k in flatten(dataclasses.asdict(default)))
            elif is_dataclass(default):
                walk(type(default), prefix + f.name + ".")
            elif local:
                out.add(prefix + f.name)

    for experiment in EXPERIMENTS.values():
        walk(experiment.config, "")
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
    single run) fall back to the folder name.

    Runs of different experiments (IMP beside prune_at_init) are labelled by the experiment first, then by
    the keys that differ among the runs of their own experiment or among settings every run has (a section
    only one experiment has differs by definition and says nothing)."""
    keys = config_differences(runs) if len(runs) > 1 else []
    experiments = {run.experiment for run in runs}
    shared = set.intersection(*(set(flatten(r.config)) for r in runs)) if runs else set()
    for run in runs:
        flat = flatten(run.config)
        own = keys
        if len(experiments) > 1:
            mates = [r for r in runs if r.experiment == run.experiment]
            within = config_differences(mates) if len(mates) > 1 else []
            own = list(dict.fromkeys([*within, *(k for k in keys if k in shared)]))
        parts = [f"{k}={_fmt(flat.get(k))}" for k in own[:max_keys]]
        if len(own) > max_keys:
            parts.append(f"(+{len(own) - max_keys} more)")
        if len(experiments) > 1:
            parts.insert(0, run.experiment)
        run.label = ", ".join(parts) if parts else run.name
    if len({r.label for r in runs}) < len(runs):  # two folders with one config: only the folder tells them apart
        for run in runs:
            run.label = f"{run.label} [{run.name}]" if run.label != run.name else run.name
    return keys


def describe_parts(config: dict[str, Any], n_replicates: int, experiment: str = "imp") -> list[str]:
    """Short phrases saying what was run: model/dataset, pruning, schedule, training, replicates."""
    if experiment in ("prune_at_init", "supermask"):
        return _describe_beyond(config, n_replicates, experiment)
    model, data = config.get("model", {}), config.get("data", {})
    pr, lot, tr = config.get("prune", {}), config.get("lottery", {}), config.get("train", {})
    name = str(model.get("name", "?"))
    custom = name.startswith("custom:")
    what = name if custom else f"{name} on {data.get('dataset', '?')}"
    if "env" in config and "agent" in config:  # an agent (lth rl): PPO on an environment
        name, what, tr = "ppo", f"ppo on {config['env'].get('id', '?')}", {"optimizer": "adam", **config["agent"]}
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


def _describe_beyond(config: dict[str, Any], n_replicates: int, experiment: str) -> list[str]:
    """describe_parts for pruning at initialization and strong tickets."""
    model, data, tr = config.get("model", {}), config.get("data", {}), config.get("train", {})
    what = f"{model.get('name', '?')} on {data.get('dataset', '?')}"
    if experiment == "prune_at_init":
        pr, pai = config.get("prune", {}), config.get("pai", {})
        rate = 100 * float(pr.get("rate", 0))
        how = f"pruned at initialization ({pai.get('scope', 'global')}) to IMP's P_m ({rate:.0f}%/level)"
    else:
        sm = config.get("supermask", {})
        methods = "/".join(sm.get("methods", [])) or "no learned mask (dense, untrained and large_final only)"
        how = f"supermask: {methods}, θ_0 {model.get('init', '?')}"
    lr = f"lr {tr.get('lr', '?')}"
    if experiment == "supermask" and config.get("supermask", {}).get("dense_lr") is not None:
        lr += f" (dense network {config['supermask']['dense_lr']})"
    training = f"{tr.get('optimizer', '?')} {lr}, {tr.get('budget', '?')}"
    return [what, how, training, f"{n_replicates} replicate{'s' if n_replicates != 1 else ''}"]


def common_title(runs: list[RunData]) -> str:
    """The description phrases shared by every run (the rest is in the curve labels)."""
    parts = [describe_parts(r.config, len(r.replicates), r.experiment) for r in runs]
    if len({r.experiment for r in runs}) > 1:  # each experiment's preset differs; the model and data may not
        parts = [[p[0].split(": ", 1)[-1], *p[1:]] for p in parts]
    first = parts[0]
    return " · ".join(p for i, p in enumerate(first) if all(len(q) > i and q[i] == p for q in parts[1:]))
