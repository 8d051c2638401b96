"""Gradual magnitude pruning (Zhu & Gupta 2017) against IMP. `lth gradual RUN --gradual.levels 2 4 6 8`.

For each IMP level L, one training from θ_0 prunes the network while it trains, on the cubic schedule
(lth.prune.gradual), to exactly the per-layer counts of IMP's level-L mask, with the masks updated every
Δt steps between `begin` and `end` (fractions of the training). It is the standard baseline that finds a
sparse network without retraining.

Two budgets per level, for the two fair comparisons:
- `gradual`: the budget of one IMP training (equal steps for the final network);
- `gradual_total`: IMP's total for the level, B + L·(B − k): IMP trains L + 1 times (the dense network and
  each level's ticket, from step k when it rewinds), so this is gradual pruning at equal total compute.
IMP's ticket of the level is copied from the source run (`imp_ticket`, with `imp_total_iterations`), and its
dense network as level 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from lth.config import ImpConfig, parse_steps
from lth.config.fields import _extent, _local
from lth.errors import ConfigError
from lth.experiments.base import Experiment, register
from lth.names import DENSE, TICKET
from lth.seeds import seed_for

GRADUAL, GRADUAL_TOTAL, IMP_TICKET = "gradual", "gradual_total", "imp_ticket"
BUDGETS = {"same": GRADUAL, "total": GRADUAL_TOTAL}


@dataclass(frozen=True)
class GradualSection:
    """The schedule of Zhu & Gupta, and which IMP levels it is compared with."""

    source: str = _local("")
    """A finished IMP run folder (`lth run`) whose levels are matched (also the first bare argument); empty:
    train this config's IMP run as needed."""
    levels: tuple[int, ...] = _extent(())
    """IMP levels whose per-layer sparsity a gradual run reaches (empty: every level the source has trained)."""
    begin: float = 0.1
    """t_0, as a fraction of the training: the first mask update."""
    end: float = 0.6
    """t_0 + nΔt, as a fraction of the training: the final sparsity is reached here (or at the last update
    before it), then the mask is frozen while the network recovers."""
    every: str = "100it"
    """Δt: steps between mask updates (Zhu & Gupta: 100 to 1000 makes little difference)."""
    initial_sparsity: float = 0.0
    """s_i: the sparsity the first update prunes to."""
    budgets: tuple[str, ...] = _extent(("same", "total"))
    """same: one IMP training's budget; total: IMP's total iterations for the level."""

    def check(self) -> None:
        if any(level < 1 for level in self.levels):
            raise ConfigError(f"--gradual.levels takes pruned IMP levels >= 1, got {self.levels}")
        if not (0 <= self.begin < self.end <= 1):
            raise ConfigError(f"--gradual.begin and --gradual.end are fractions of the training with 0 <= begin < "
                              f"end <= 1, got {self.begin} and {self.end}")
        if parse_steps(self.every, "--gradual.every")[0] < 1:
            raise ConfigError(f"--gradual.every must be at least 1it, got {self.every!r}")
        if not (math.isfinite(self.initial_sparsity) and 0 <= self.initial_sparsity < 1):
            raise ConfigError(f"--gradual.initial_sparsity must be in [0, 1), got {self.initial_sparsity}")
        unknown = [b for b in self.budgets if b not in BUDGETS]
        if unknown or not self.budgets:
            raise ConfigError(f"--gradual.budgets takes some of {', '.join(BUDGETS)}, got {self.budgets}")


@dataclass(frozen=True)
class GradualConfig(ImpConfig):
    experiment = "gradual"

    gradual: GradualSection = field(default_factory=GradualSection)

    def folder_mode(self) -> str:
        return "gradual"


def resolve(cfg: GradualConfig) -> GradualConfig:
    from lth.experiments.sources import resolve_source

    return resolve_source(cfg, "gradual")


def budget_of(cfg: GradualConfig, data) -> tuple[int, int, int]:
    """(IMP's budget B, rewind step k, Δt) in iterations."""
    from lth.experiments.imp import rewind_step
    from lth.experiments.sources import steps_per_epoch
    from lth.train import to_iterations

    spe = steps_per_epoch(cfg, data)
    return (to_iterations(cfg.train.budget, spe, "--train.budget"), rewind_step(cfg, data),
            to_iterations(cfg.gradual.every, spe, "--gradual.every"))


def check(cfg: GradualConfig, data) -> None:
    from lth.experiments.sources import check_source
    from lth.prune.gradual import GradualSchedule

    total, _, every = budget_of(cfg, data)
    begin, end = round(cfg.gradual.begin * total), round(cfg.gradual.end * total)
    GradualSchedule.spanning(begin, end, every, 0, {})  # refuses a window without one update
    check_source(cfg, "gradual", data, finished=True)


class Gradual:
    def __init__(self, cfg: GradualConfig, store, source, build: Callable[[int], Any], levels: list[int], data):
        from lth.experiments.imp import _plan

        self.cfg, self.store, self.source, self.build, self.levels = cfg, store, source, build, levels
        self.total, self.k, self.every = budget_of(cfg, data)
        self.plan = _plan(cfg, build(cfg.seed))

    def seed(self, replicate: int) -> int:
        return seed_for("init", self.cfg.seed, replicate)

    def imp_total(self, level: int) -> int:
        """IMP's iterations up to and including level L's ticket: the dense training and L tickets."""
        return self.total + level * (self.total - self.k)

    def budget(self, level: int, branch: str) -> int:
        return self.total if branch == GRADUAL else self.imp_total(level)

    def final_counts(self, level: int) -> dict[str, int] | int:
        """IMP's kept counts at `level`: per pruned layer (layer-wise), or their total (global)."""
        from lth.prune import Mask

        ones = Mask({n: _ones(size) for n, size in self.plan.sizes.items()})
        counts = self.plan.target_counts(ones, rounds=level)
        return counts if isinstance(counts, int) else {n: counts[n] for n in self.plan.pruned}

    def schedule(self, level: int, branch: str):
        from lth.prune.gradual import GradualSchedule

        budget, section = self.budget(level, branch), self.cfg.gradual
        return GradualSchedule.spanning(round(section.begin * budget), round(section.end * budget), self.every,
                                        self.final_counts(level), {n: self.plan.sizes[n] for n in self.plan.pruned},
                                        section.initial_sparsity)

    def job(self, replicate: int, level: int, branch: str):
        from functools import partial

        from lth.executors import TrainJob
        from lth.experiments.sources import rewind_weights
        from lth.store import Unit
        from lth.train.gradual import gradual_stepper

        unit = Unit(replicate, level, branch)
        if self.store.is_done(unit):
            return None
        train = replace(self.cfg.train, budget=f"{self.budget(level, branch)}it",
                        data_seed=seed_for("data", self.cfg.train.data_seed, replicate))
        return TrainJob(key=unit.key, build=partial(self.build, self.seed(replicate)), train=train,
                        start=rewind_weights(self.source, replicate, False), data=self.cfg.data,
                        augment=self.cfg.data.augment, resume_path=self.store.resume_path(unit),
                        checkpoint_seconds=self.cfg.checkpoint_seconds,
                        stepper=partial(gradual_stepper, schedule=self.schedule(level, branch), plan=self.plan))

    def record(self, replicate: int, level: int, branch: str, result):
        from lth.fileio import save_weights
        from lth.prune import Mask, select
        from lth.records import Summary
        from lth.store import Unit

        unit = Unit(replicate, level, branch)
        if result is None:
            return self.store.summary(unit)
        final = result.final
        ones = Mask({n: _ones(size).view_as(final[n]) for n, size in self.plan.sizes.items()})
        mask = select({n: final[n].abs() for n in self.plan.pruned}, ones, self.plan, self.final_counts(level))
        if any(bool((final[n][~mask[n]] != 0).any()) for n in mask):
            raise RuntimeError(f"{unit.key}: weights outside the final gradual mask are not zero")
        mask.save(self.store.unit_mask_path(unit))
        save_weights(final, self.store.final_path(unit))
        schedule = self.schedule(level, branch)
        summary = Summary.from_dict({"replicate": replicate, "level": level, "branch": branch,
                                     "remaining_percent": 100 * mask.density(), "start_step": 0, **result.summary,
                                     **pruned_early_stop(result, schedule.end),
                                     "budget_iterations": self.budget(level, branch),
                                     "imp_total_iterations": self.imp_total(level), "prune_begin": schedule.t0,
                                     "prune_end": schedule.end, "prune_every": schedule.dt,
                                     "seconds": round(result.seconds, 3)})
        self.store.write_result(unit, result.metrics, summary)
        return summary

    def copy_imp(self, replicate: int, level: int):
        from lth.experiments.sources import copy_result
        from lth.store import Unit

        if level == 0:
            return copy_result(self.source, Unit(replicate, 0, TICKET), self.store, Unit(replicate, 0, DENSE),
                               imp_total_iterations=self.total)
        return copy_result(self.source, Unit(replicate, level, TICKET), self.store, Unit(replicate, level, IMP_TICKET),
                           imp_total_iterations=self.imp_total(level))

    def submit(self, executor) -> list:
        out = []
        for r in range(self.cfg.lottery.replicates):
            out.append(executor.submit(self.copy_imp, r, 0))
            for level in self.levels:
                out.append(executor.submit(self.copy_imp, r, level))
                for branch in (BUDGETS[b] for b in self.cfg.gradual.budgets):
                    job = executor.submit(self.job, r, level, branch)
                    out.append(executor.submit(self.record, r, level, branch, executor.train(job)))
        return out

    def run(self, executor, log: Callable[[str], None]) -> None:
        log(f"run folder: {self.store.root}")
        executor.gather(self.submit(executor))
        log(show(self.store))


def pruned_early_stop(result, end: int) -> dict:
    """The early stop among the evaluations at the final sparsity: the loop's own would pick the dense network
    when the validation loss is lowest before pruning ends. The last update runs before step `end` + 1 (the
    evaluation at step s follows the step at index s − 1), so the evaluation at `end` is one update short."""
    from lth.train.metrics import summarize

    rows = [m for m in result.metrics if m["step"] > end]
    final_train = (result.summary["final_train_loss"], result.summary["final_train_acc"])
    return {k: v for k, v in summarize(rows, final_train).items() if k.startswith("early_stop")}


def _ones(size: int):
    import torch

    return torch.ones(size, dtype=torch.bool)


def run(cfg: GradualConfig, executor, store, log: Callable[[str], None] = print) -> None:
    from lth.experiments.sources import begin

    source, levels, build, data = begin(cfg, "gradual", executor, store, log)
    Gradual(cfg, store, source, build, levels, data).run(executor, log)


def show(store) -> str:
    from lth.experiments.results import aggregate

    rows = {(r["level"], r["branch"]): r for r in aggregate(store.summaries())}
    levels = sorted({lv for lv, b in rows if b in (GRADUAL, GRADUAL_TOTAL)})
    if not levels:
        return "no finished gradual trainings yet"

    def cell(row, key: str, scale: float = 1.0, fmt: str = "{:.1f}") -> str:
        return fmt.format(scale * row[key]["mean"]) if row is not None and key in row else "-"

    lines = [f"{'level':>5} {'P_m %':>7} {'IMP iters':>9} {'IMP test@end':>12} {'gradual iters':>13} "
             f"{'test@end':>8} {'gradual_total iters':>19} {'test@end':>8}"]
    for lv in levels:
        imp, g, gt = rows.get((lv, IMP_TICKET)), rows.get((lv, GRADUAL)), rows.get((lv, GRADUAL_TOTAL))
        pm = next(r for r in (imp, g, gt) if r is not None)["remaining_percent"]
        lines.append(f"{lv:>5} {pm:>7.2f} {cell(imp, 'imp_total_iterations', fmt='{:.0f}'):>9} "
                     f"{cell(imp, 'final_test_acc', 100):>12} {cell(g, 'budget_iterations', fmt='{:.0f}'):>13} "
                     f"{cell(g, 'final_test_acc', 100):>8} {cell(gt, 'budget_iterations', fmt='{:.0f}'):>19} "
                     f"{cell(gt, 'final_test_acc', 100):>8}")
    return "\n".join(lines)


def expected_branches(config: dict, level: int) -> list[str]:
    section = config.get("gradual", {})
    if level == 0:
        return [DENSE]
    levels = section.get("levels") or []
    if levels and level not in levels:
        return []
    return [IMP_TICKET, *(BUDGETS[b] for b in section.get("budgets", BUDGETS) if b in BUDGETS)]


GRADUAL_EXPERIMENT = register(Experiment(
    name="gradual", config=GradualConfig, run=run, commands=("gradual",), check=check, show=show,
    positional=("gradual.source",), resolve=resolve, branches=expected_branches, report_sections=("gradual",),
    help="gradual magnitude pruning (Zhu & Gupta) to IMP's sparsities, at equal steps and at equal total compute"))
