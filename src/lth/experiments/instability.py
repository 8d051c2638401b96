"""Instability analysis (Frankle et al. 2020, "Linear mode connectivity and the lottery ticket hypothesis").
`lth instability RUN --instability.levels 0 3 7 --instability.k 0it 100it 500it`.

From θ_k, the dense training's weights at step k, two copies of a network are trained to the end of the
budget with different data orders and everything else the same. The test error is measured at evenly spaced
points on the line between them; the error barrier is the highest error on that line minus the mean of the
endpoints'. A network is stable at k when the barrier is about 0 (the paper: below 2%).

- Level 0 is the dense network (`dense_k<k>`). A pruned level L trains its IMP mask on θ_k (`ticket_k<k>`)
  and, with the controls, the same mask on a fresh initialization (`reinit_k<k>`) and a random mask with the
  same per-layer counts on θ_k (`random_prune_k<k>`), like IMP's controls; both copies share the mask, so the
  whole line stays on it.
- The masks and θ_0 come from a source IMP run: a finished run folder given as RUN, or this config's IMP run,
  trained as needed in the same output folder. θ_k is saved by copy `a` of the dense network at k = 0, which
  is the source's dense training again (same θ_0, same data order).
- Copy `a` trains on the replicate's data order (IMP's), copy `b` on another one. Each copy is a training
  (`ticket_k500_a`, `..._b`) with its summary and final weights; the measurement is a record of its own
  (`ticket_k500`) holding the barrier and the path. Everything is resumable and skipped when finished.

The paper finds the masks for each k with IMP rewound to that k; here the masks of one source run (found with
its own rewind step) are measured at every k, so a single IMP run serves the whole grid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from lth.config import ImpConfig, parse_steps
from lth.config.fields import _extent, _local
from lth.errors import ConfigError
from lth.experiments.base import Experiment, ShipsWithoutData, register
from lth.names import CONTROLS, DENSE, RANDOM_PRUNE, REINIT, TICKET
from lth.seeds import seed_for

COPIES = ("a", "b")


@dataclass(frozen=True)
class InstabilitySection:
    """What to measure: which levels, from which steps k, on how many points of the path."""

    source: str = _local("")
    """A finished IMP run folder (`lth run`) whose θ_0 and masks are used (also the first bare argument); empty:
    train this config's IMP run as needed."""
    levels: tuple[int, ...] = _extent((0,))
    """IMP levels to measure; 0 is the dense network."""
    k: tuple[str, ...] = _extent(("0it", "100it", "500it"))
    """Steps k: both copies start from θ_k (under the level's mask) and train to the end of the budget."""
    points: int = 30
    """Evenly spaced points α on the line between the copies, both ends included."""
    controls: tuple[str, ...] = _extent(CONTROLS)
    """Controls measured at the pruned levels: reinit (the mask on a fresh init), random_prune (a random mask
    with the same per-layer counts on θ_k)."""

    def check(self) -> None:
        if not self.levels or any(level < 0 for level in self.levels):
            raise ConfigError(f"--instability.levels takes IMP levels >= 0 (0: the dense network), got {self.levels}")
        if not self.k:
            raise ConfigError("--instability.k needs at least one step, e.g. 0it 100it 500it")
        for k in self.k:
            parse_steps(k, "--instability.k")
        if self.points < 2:
            raise ConfigError(f"--instability.points must be at least 2 (the two endpoints), got {self.points}")
        unknown = [c for c in self.controls if c not in CONTROLS]
        if unknown:
            raise ConfigError(f"unknown control(s) {unknown} in --instability.controls; choose from "
                              f"{', '.join(CONTROLS)}, or give none")


@dataclass(frozen=True)
class InstabilityConfig(ImpConfig):
    """An IMP config (the source's, when one is given) and what to measure on it."""

    experiment = "instability"

    instability: InstabilitySection = field(default_factory=InstabilitySection)

    def folder_mode(self) -> str:
        return "instability"


def resolve(cfg: InstabilityConfig) -> InstabilityConfig:
    """With a source run, its data, model, training, pruning and seed are the ones measured."""
    from lth.experiments.sources import resolve_source

    return resolve_source(cfg, "instability")


def steps_of(cfg: InstabilityConfig, data) -> tuple[list[int], int]:
    """The k of each --instability.k in iterations (sorted, unique), and the budget; refuses a k at or beyond it."""
    from lth.experiments.sources import steps_per_epoch
    from lth.train import to_iterations

    spe = steps_per_epoch(cfg, data)
    total = to_iterations(cfg.train.budget, spe, "--train.budget")
    ks = []
    for text in cfg.instability.k:
        k = to_iterations(text, spe, "--instability.k")
        if k >= total:
            raise ConfigError(f"--instability.k {text} is step {k}, at or beyond the training budget of {total} "
                              "iterations, so the copies would not train at all; choose k below the budget (a few "
                              "percent of it, e.g. 0it 100it 500it)")
        ks.append(k)
    return sorted(set(ks)), total


def check(cfg: InstabilityConfig, data) -> None:
    from lth.experiments.sources import check_source

    steps_of(cfg, data)
    check_source(cfg, "instability", data, finished=False)


def branch(base: str, k: int, copy: str = "") -> str:
    """`ticket_k500` (the measurement), `ticket_k500_a` / `_b` (the copies)."""
    return f"{base}_k{k}" + (f"_{copy}" if copy else "")


class Instability(ShipsWithoutData):
    """The trainings and measurements of one instability run; each step skips what the run folder has."""

    def __init__(self, cfg: InstabilityConfig, store, source, build: Callable[[int], Any], ks: list[int], data):
        self.cfg, self.store, self.source, self.build, self.ks = cfg, store, source, build, ks
        self._data, self._has_data = data, data is not None
        self.levels = sorted(set(cfg.instability.levels))
        self._masks: dict[tuple[int, int, str], Any] = {}

    def seed(self, replicate: int) -> int:
        return seed_for("init", self.cfg.seed, replicate)

    def bases(self, level: int) -> list[str]:
        return [DENSE] if level == 0 else [TICKET, *self.cfg.instability.controls]

    def data_seed(self, replicate: int, copy: str) -> int:
        if copy == "a":  # the replicate's own order: copy a at k = 0 is the source's training again
            return seed_for("data", self.cfg.train.data_seed, replicate)
        return seed_for("instability_copy", self.cfg.train.data_seed, replicate) % 2**31

    # -- masks and starting weights ------------------------------------------------------------------
    def prepare(self, replicate: int) -> None:
        """Copy the levels' masks from the source (the run folder then holds everything it measured)."""
        for level in self.levels:
            if level > 0:
                self.mask(replicate, level, TICKET)
                if RANDOM_PRUNE in self.cfg.instability.controls:
                    self.mask(replicate, level, RANDOM_PRUNE)

    def mask(self, replicate: int, level: int, base: str):
        import torch

        from lth.prune import Mask, random_mask_like
        from lth.store import Unit

        if level == 0:
            return None
        if (replicate, level, base) in self._masks:
            return self._masks[replicate, level, base]
        template = self.build(self.seed(replicate))
        path = self.store.mask_path(replicate, level)
        if not path.exists():
            Mask.load(self.source.mask_path(replicate, level), template).save(path)
        ticket = self._masks.setdefault((replicate, level, TICKET), Mask.load(path, template))
        if base != RANDOM_PRUNE:
            return ticket
        unit = Unit(replicate, level, RANDOM_PRUNE)
        path = self.store.unit_mask_path(unit)
        if not path.exists():
            # IMP's own random mask of this level when the source has it; else the same draw IMP makes.
            theirs = self.source.unit_mask_path(unit)
            if theirs.exists():
                mask = Mask.load(theirs, template)
            else:
                g = torch.Generator().manual_seed(seed_for("random_prune", self.cfg.seed, replicate, level))
                mask = random_mask_like(ticket, g)
            mask.save(path)
        return self._masks.setdefault((replicate, level, base), Mask.load(path, template))

    def start(self, replicate: int, level: int, base: str, k: int) -> dict:
        from lth.experiments.sources import rewind_weights
        from lth.fileio import load_weights

        if base == REINIT:
            return self.build(seed_for("reinit", self.cfg.seed, replicate, level, REINIT)).state_dict()
        if k == 0:
            return rewind_weights(self.source, replicate, False)
        return load_weights(self.store.theta_path(replicate, k),
                            fix=f"It is θ_{k}, saved by the dense network's copy a at k=0; delete "
                                f"{self.store.level_dir(replicate, 0)} to retrain it.")

    def missing_thetas(self, replicate: int) -> list[int]:
        return [k for k in self.ks if k > 0 and not self.store.theta_path(replicate, k).exists()]

    # -- trainings -----------------------------------------------------------------------------------
    def job(self, replicate: int, level: int, base: str, k: int, copy: str, *_deps):
        """A copy's TrainJob (None when finished). The dense copy a at k = 0 also saves every θ_k."""
        from functools import partial

        from lth.executors import TrainJob
        from lth.store import Unit

        unit = Unit(replicate, level, branch(base, k, copy))
        if self.store.is_done(unit):
            return None
        provider = (level, base, k, copy) == (0, DENSE, 0, "a")
        save_at = {s: self.store.theta_path(replicate, s) for s in self.missing_thetas(replicate)} if provider else {}
        train = replace(self.cfg.train, data_seed=self.data_seed(replicate, copy))
        return TrainJob(key=unit.key, build=partial(self.build, self.seed(replicate)), train=train,
                        start=self.start(replicate, level, base, k), mask=self.mask(replicate, level, base),
                        data=self.cfg.data, augment=self.cfg.data.augment, start_step=k, save_at=save_at,
                        resume_path=self.store.resume_path(unit), checkpoint_seconds=self.cfg.checkpoint_seconds)

    def theta_job(self, replicate: int, *_deps):
        """θ_k for a k added after the dense copy a finished: that training again, only for its files."""
        from functools import partial

        from lth.experiments.sources import snapshot_job

        return snapshot_job(self.cfg, self.store, partial(self.build, self.seed(replicate)), replicate,
                            [k for k in self.ks if k > 0], self.start(replicate, 0, DENSE, 0))

    def record(self, replicate: int, level: int, base: str, k: int, copy: str, result):
        from lth.fileio import save_weights
        from lth.records import Summary
        from lth.store import Unit

        unit = Unit(replicate, level, branch(base, k, copy))
        if result is None:
            return self.store.summary(unit)
        save_weights(result.final, self.store.final_path(unit))
        summary = Summary.from_dict({"replicate": replicate, "level": level, "branch": unit.branch,
                                     "remaining_percent": self.pm(replicate, level), "start_step": k,
                                     **result.summary, "rewind_step": k, "copy": copy,
                                     "seconds": round(result.seconds, 3)})
        self.store.write_result(unit, result.metrics, summary)
        return summary

    def pm(self, replicate: int, level: int) -> float:
        mask = self.mask(replicate, level, TICKET)
        return 100.0 if mask is None else 100 * mask.density()

    # -- the measurement -----------------------------------------------------------------------------
    def measure(self, replicate: int, level: int, base: str, k: int, *_copies):
        """The error along the line between the two copies, and its barrier."""
        from functools import partial

        from lth.fileio import load_weights
        from lth.records import Summary
        from lth.store import Unit
        from lth.train.interpolate import interpolate

        unit = Unit(replicate, level, branch(base, k))
        if self.store.is_done(unit):
            return self.store.summary(unit)
        a, b = (load_weights(self.store.final_path(Unit(replicate, level, branch(base, k, c))),
                             fix="It is a copy's final network; delete its folder to retrain it.") for c in COPIES)
        test = self.data.test
        path = interpolate(partial(self.build, self.seed(replicate)), a, b, test.x, test.y,
                           self.cfg.instability.points)
        summary = Summary.from_dict({
            "replicate": replicate, "level": level, "branch": unit.branch,
            "remaining_percent": self.pm(replicate, level), "rewind_step": k, "barrier": path.barrier,
            "error_a": path.errors[0], "error_b": path.errors[-1], "error_max": max(path.errors),
            "alpha": path.alphas, "test_error": path.errors, "test_loss": path.losses})
        self.store.write_result(unit, [], summary)
        return summary

    # -- the graph -----------------------------------------------------------------------------------
    def submit(self, executor) -> list:
        """Every copy and measurement; returns the measurements' handles in (replicate, level, base, k) order."""
        from lth.experiments.sources import drop_snapshot_state

        out = []
        for r in range(self.cfg.lottery.replicates):
            ready = executor.submit(self.prepare, r)
            copies: dict[tuple, Any] = {}

            def training(level: int, base: str, k: int, copy: str, *deps):
                key = (level, base, k, copy)
                if key not in copies:
                    job = executor.submit(self.job, r, level, base, k, copy, ready, *deps)
                    copies[key] = executor.submit(self.record, r, level, base, k, copy, executor.train(job))
                return copies[key]

            thetas = []
            if any(k > 0 for k in self.ks):
                provider = training(0, DENSE, 0, "a")
                theta = executor.train(executor.submit(self.theta_job, r, provider))
                thetas = [executor.submit(drop_snapshot_state, self.store, r, theta)]
            for level in self.levels:
                for base in self.bases(level):
                    for k in self.ks:
                        deps = thetas if k > 0 else []
                        pair = [training(level, base, k, c, *deps) for c in COPIES]
                        out.append(executor.submit(self.measure, r, level, base, k, *pair))
        return out

    def run(self, executor, log: Callable[[str], None]) -> None:
        log(f"run folder: {self.store.root}")
        executor.gather(self.submit(executor))
        log(show(self.store))


def run(cfg: InstabilityConfig, executor, store, log: Callable[[str], None] = print) -> None:
    from lth.experiments.sources import begin

    ks, _ = steps_of(cfg, executor.dataset(cfg.data))
    source, _, build, data = begin(cfg, "instability", executor, store, log, k=ks)
    Instability(cfg, store, source, build, ks, data).run(executor, log)


def measurements(store) -> list[dict]:
    """The measurement records (one per replicate, level, base and k), as dicts."""
    return [s.to_dict() for s in store.summaries() if "barrier" in s.extra]


def show(store) -> str:
    from lth.experiments.results import aggregate

    rows = aggregate(measurements(store))
    if not rows:
        return "no finished measurements yet"
    lines = [f"{'level':>5} {'P_m %':>7} {'network':<14} {'k':>7} {'err a %':>8} {'err b %':>8} {'max %':>7} "
             f"{'barrier %':>9}"]
    for r in sorted(rows, key=lambda r: (r["level"], _base_order(r["branch"]), r["rewind_step"]["mean"])):
        base = r["branch"].rsplit("_k", 1)[0]
        cells = [f"{100 * r[key]['mean']:.2f}" for key in ("error_a", "error_b", "error_max", "barrier")]
        lines.append(f"{r['level']:>5} {r['remaining_percent']:>7.2f} {base:<14} {int(r['rewind_step']['mean']):>7} "
                     f"{cells[0]:>8} {cells[1]:>8} {cells[2]:>7} {cells[3]:>9}")
    return "\n".join(lines)


def _base_order(name: str) -> int:
    base = name.rsplit("_k", 1)[0]
    return {DENSE: 0, TICKET: 0, REINIT: 1, RANDOM_PRUNE: 2}.get(base, 3)


def expected_branches(config: dict, level: int) -> list[str]:
    section = config.get("instability", {})
    if level not in section.get("levels", []):
        return []
    bases = [DENSE] if level == 0 else [TICKET, *section.get("controls", [])]
    ks = sorted({parse_steps(k, "k")[0] for k in section.get("k", []) if k.endswith("it")})
    return [branch(b, k, c) for b in bases for k in ks for c in ("", *COPIES)]


INSTABILITY = register(Experiment(
    name="instability", config=InstabilityConfig, run=run, commands=("instability",), check=check, show=show,
    positional=("instability.source",), resolve=resolve, branches=expected_branches,
    report_sections=("instability",),
    help="error barrier between two copies trained from θ_k (linear mode connectivity)"))
