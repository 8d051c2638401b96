"""Pruning at initialization (`lth prune_at_init`): can a ticket be found without training the dense network?

Each criterion (SNIP, GraSP, SynFlow, magnitude at initialization, random, smart ratio; any registered one)
prunes θ_0 once to each target P_m, and the subnetwork then trains from θ_0 exactly like an IMP ticket: same
θ_0 and data order as IMP's replicate, same budget, early stop and records. The targets are IMP's levels
(level L keeps what L rounds of --prune.rate keep), so a run and an IMP run of the same preset share their
P_m and draw on one axis. Level 0 is the dense network.

Frankle et al.'s (2021) sanity checks run as extra branches, `<criterion>_<ablation>`:
- shuffle: the criterion's mask permuted within each layer (keeps only the per-layer sparsity);
- reinit:  the criterion's mask on a fresh θ_0 from the same initializer;
- invert:  the lowest-scoring weights kept instead of the highest (every round, for SynFlow).
They are not run for random and smart_ratio, whose positions are random already.

A layer left without any weight (layer collapse) is reported: printed with the level, and counted in the
summary (`collapsed_layers`); it is trained anyway, so the collapse shows in its accuracy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from lth.config import PAI_ABLATIONS, PaiSection, PruneAtInitConfig, PruneConfig
from lth.errors import ConfigError, RunFolderError
from lth.experiments.base import (
    Experiment,
    ShipsWithoutData,
    criterion_batches,
    draw_init,
    init_state,
    register,
)
from lth.names import DENSE
from lth.seeds import seed_for

RANDOM_POSITIONS = ("random", "smart_ratio")
"""Criteria whose positions are random within a layer: shuffling, reinitializing or inverting them tests
nothing the criterion itself does not."""

PROVIDES = frozenset({"initial", "build", "batches", "input_shape", "plan", "counts"})
"""What this experiment's criterion context holds (beyond weights, mask, names, generator)."""

EXAMPLES_PER_CLASS = 10
"""SNIP and GraSP score on this many examples per class by default (the Synaptic-Flow code's
prune_dataset_ratio)."""


def branch_names(pai: PaiSection, level: int) -> list[str]:
    """The trainings of a level: the dense network at level 0; each criterion, then its ablations."""
    if level == 0:
        return [DENSE]
    if level not in pai.levels:
        return []
    names = list(pai.criteria)
    if pai.ablations and (not pai.ablation_levels or level in pai.ablation_levels):
        names += [f"{c}_{a}" for c in pai.criteria if c not in RANDOM_POSITIONS for a in pai.ablations]
    return names


def split_branch(branch: str) -> tuple[str, str | None]:
    """(criterion, ablation or None) of a branch name."""
    for ablation in PAI_ABLATIONS:
        if branch.endswith("_" + ablation):
            return branch[: -len(ablation) - 1], ablation
    return branch, None


def _plan(cfg: PruneAtInitConfig, template):
    from lth.prune import PrunePlan

    return PrunePlan.for_model(template, cfg.prune)


def _rates(plan):
    return plan.rates if plan.strategy == "layerwise" else next(iter(plan.rates.values()))


def check(cfg: PruneAtInitConfig, data) -> None:
    """What needs the model: the levels against the schedule, the criteria against what this experiment gives
    them, and the scope against the prune section."""
    from lth.experiments.imp import ModelBuilder
    from lth.prune import check_criterion
    from lth.prune.schedule import useful_levels

    plan = _plan(cfg, ModelBuilder.for_data(cfg.model, data)(cfg.seed))
    useful = useful_levels(plan.sizes, _rates(plan), plan.pruned)
    beyond = [lv for lv in cfg.pai.levels if lv > useful]
    if beyond:
        raise ConfigError(f"--pai.levels {beyond}: P_m stops changing after level {useful} of this schedule "
                          f"(--prune.rate {cfg.prune.rate}); use levels up to {useful}")
    if cfg.pai.scope == "layerwise" and cfg.prune.strategy != "layerwise":
        raise ConfigError("--pai.scope layerwise takes its per-layer counts from a layer-wise schedule; set "
                          "--prune.strategy layerwise, or use --pai.scope global")
    if cfg.prune.criterion != PruneConfig.criterion:
        raise ConfigError(f"prune_at_init takes its criteria from --pai.criteria, not --prune.criterion "
                          f"({cfg.prune.criterion!r}); drop --prune.criterion")
    for name in cfg.pai.criteria:
        check_criterion(name, PROVIDES, strategy=cfg.pai.scope, where="prune_at_init", flag="--pai.criteria")


class PruneAtInit(ShipsWithoutData):
    """The steps of one run, each a function of where it sits (replicate, level, branch) that reads and writes
    the run folder and skips what is already there."""

    def __init__(self, cfg: PruneAtInitConfig, store, build, data):
        from lth.prune import PrunePlan, pm_schedule

        self.cfg, self.store, self.build, self._data, self._has_data = cfg, store, build, data, data is not None
        self.plan = _plan(cfg, build(cfg.seed))  # IMP's schedule: the targets
        # The selection: global over the pruned layers (the papers'), or IMP's per-layer counts.
        self.select_plan = self.plan if cfg.pai.scope == "layerwise" else \
            PrunePlan("global", self.plan.rates, self.plan.sizes, self.plan.output)
        self.schedule = pm_schedule(self.plan.sizes, _rates(self.plan), max(cfg.pai.levels), pruned=self.plan.pruned)
        self._masks: dict[tuple[int, int, str], Any] = {}

    def seed(self, replicate: int) -> int:
        return seed_for("init", self.cfg.seed, replicate)

    @staticmethod
    def unit(replicate: int, level: int, branch: str):
        from lth.store import Unit

        return Unit(replicate, level, branch)

    # -- θ_0 ---------------------------------------------------------------------------------------
    def init(self, replicate: int) -> None:
        draw_init(self.store, self.build, self.seed(replicate), replicate)

    def _init_state(self, replicate: int) -> dict:
        return init_state(self.store, replicate)

    # -- masks -------------------------------------------------------------------------------------
    def counts(self, level: int):
        """What a level keeps: one global total, or IMP's per-layer counts."""
        from lth.prune import Mask

        ones = Mask.ones_like(self.build(self.cfg.seed), list(self.plan.sizes))
        counts = self.plan.target_counts(ones, rounds=level)
        if self.cfg.pai.scope == "layerwise":
            return counts
        return counts if isinstance(counts, int) else sum(counts[n] for n in self.plan.pruned)

    def mask(self, replicate: int, level: int, branch: str, *_deps):
        """The branch's mask, computed once and kept in its unit folder."""
        from lth.prune import Mask

        key = (replicate, level, branch)
        if key in self._masks:
            return self._masks[key]
        template = self.build(self.seed(replicate))
        if level == 0:
            mask = Mask.ones_like(template, list(self.plan.sizes))
        else:
            path = self.store.unit_mask_path(self.unit(*key))
            if path.exists():
                mask = Mask.load(path, template)
                self._check_counts(mask, level, path)
            else:
                mask = self._compute(replicate, level, branch)
                mask.save(path)
        self._masks[key] = mask
        return mask

    def _compute(self, replicate: int, level: int, branch: str):
        import torch

        from lth.prune import CriterionContext, Mask, score_and_select

        criterion, ablation = split_branch(branch)
        if ablation in ("shuffle", "reinit"):
            base = self.mask(replicate, level, criterion)
            if ablation == "reinit":
                return base
            g = torch.Generator().manual_seed(seed_for("pai_shuffle", self.cfg.seed, replicate, level, criterion))
            return Mask({n: t.flatten()[torch.randperm(t.numel(), generator=g).to(t.device)].view(t.shape)
                         if n in self.plan.pruned else t for n, t in base.items()})
        theta0 = self._init_state(replicate)
        ones = Mask.ones_like(self.build(self.seed(replicate)), list(self.plan.sizes))
        counts = self.counts(level)
        context = CriterionContext(
            weights=theta0, initial=theta0, mask=ones, names=self.plan.pruned,
            generator=torch.Generator().manual_seed(seed_for("pai_prune", self.cfg.seed, replicate, level, criterion)),
            build=lambda: self.build(self.seed(replicate)),
            batches=criterion_batches(self.data, self.cfg.train.batch_size, self.cfg.seed, replicate),
            input_shape=tuple(self.build.input_shape), plan=self.select_plan, counts=counts,
            extra={"batches": self._batch_count()})
        return score_and_select(criterion, context, self.select_plan, counts, invert=ablation == "invert")

    def _batch_count(self) -> int:
        if self.cfg.pai.batches:
            return self.cfg.pai.batches
        return max(1, -(-EXAMPLES_PER_CLASS * self.data.num_classes // self.cfg.train.batch_size))

    def _check_counts(self, mask, level: int, path) -> None:
        counts = self.counts(level)
        if self.plan.counts_of(mask, counts) != counts:
            raise RunFolderError(f"{path} keeps {100 * mask.density():.2f}% of the weights, not the "
                                 f"{self.schedule[level]:.2f}% of level {level}: the file was copied or moved from "
                                 f"elsewhere. Delete {path.parent} to recompute that training.")

    def collapsed(self, mask) -> list[str]:
        """Pruned layers the mask leaves without any weight."""
        kept = mask.kept()
        return [n for n in self.plan.pruned if kept[n] == 0]

    # -- trainings ---------------------------------------------------------------------------------
    def job(self, replicate: int, level: int, branch: str, *_deps):
        from functools import partial

        from lth.executors import TrainJob

        unit = self.unit(replicate, level, branch)
        if self.store.is_done(unit):
            return None
        mask = self.mask(replicate, level, branch)
        start = self._init_state(replicate)
        if split_branch(branch)[1] == "reinit":
            start = self.build(seed_for("reinit", self.cfg.seed, replicate, level, branch)).state_dict()
        train = replace(self.cfg.train, data_seed=seed_for("data", self.cfg.train.data_seed, replicate))
        return TrainJob(key=unit.key, build=partial(self.build, self.seed(replicate)), train=train, start=start,
                        mask=mask, data=self.cfg.data, augment=self.cfg.data.augment,
                        resume_path=self.store.resume_path(unit), checkpoint_seconds=self.cfg.checkpoint_seconds)

    def record(self, replicate: int, level: int, branch: str, result):
        from lth.records import Summary

        unit = self.unit(replicate, level, branch)
        if result is None:
            return self.store.summary(unit)
        mask = self.mask(replicate, level, branch)
        extra = {"collapsed_layers": len(self.collapsed(mask))} if level > 0 else {}
        summary = Summary.from_dict({"replicate": replicate, "level": level, "branch": branch,
                                     "remaining_percent": 100 * mask.density(), "start_step": 0,
                                     **result.summary, **extra, "seconds": round(result.seconds, 3)})
        self.store.write_result(unit, result.metrics, summary)
        return summary

    # -- the run -----------------------------------------------------------------------------------
    def levels(self) -> list[int]:
        return [0, *sorted(self.cfg.pai.levels)]

    def submit(self, executor) -> list[list]:
        out = []
        inits = {r: executor.submit(self.init, r) for r in range(self.cfg.pai.replicates)}
        for level in self.levels():
            handles = []
            for r in range(self.cfg.pai.replicates):
                masks = {}
                for branch in branch_names(self.cfg.pai, level):
                    # shuffle and reinit reuse their criterion's mask: wait for it rather than compute it twice
                    criterion, ablation = split_branch(branch)
                    after = masks[criterion] if ablation in ("shuffle", "reinit") else inits[r]
                    ready = masks[branch] = executor.submit(self.mask, r, level, branch, after)
                    job = executor.submit(self.job, r, level, branch, ready)
                    handles.append(executor.submit(self.record, r, level, branch, executor.train(job)))
            out.append(handles)
        return out

    def run(self, executor, log: Callable[[str], None] = print) -> None:
        from lth.experiments.results import format_level, level_rows

        log(f"run folder: {self.store.root}")
        self.store.write_plan({"pm_percent": self.schedule, "levels": self.levels()})
        width = max(len(b) + 1 for lv in self.levels() for b in [*branch_names(self.cfg.pai, lv), " " * 12])
        for i, (level, handles) in enumerate(zip(self.levels(), self.submit(executor))):
            summaries = executor.gather(handles)
            log(format_level(level_rows(summaries, level), header=i == 0, branch_width=width))
            for line in collapse_lines(summaries, self.store):
                log(line)


def collapse_lines(summaries, store) -> list[str]:
    """One line per training whose mask left a layer empty (from its mask.json), for the printed table."""
    from lth.fileio import read_json

    lines = []
    for s in summaries:
        if not s.extra.get("collapsed_layers"):
            continue
        from lth.store import Unit

        meta = store.unit_mask_path(Unit(s.replicate, s.level, s.branch)).with_suffix(".json")
        layers = read_json(meta, "It is the mask's readable summary; delete the training's folder to redo it.")
        empty = [n for n, v in layers.get("layers", {}).items() if v.get("kept") == 0]
        lines.append(f"  layer collapse: level {s.level} {s.branch} (replicate {s.replicate}) keeps no weight of "
                     f"{', '.join(empty)}: that network cannot pass a signal; trained anyway")
    return lines


def run(cfg: PruneAtInitConfig, executor, store, log: Callable[[str], None] = print) -> None:
    from lth.experiments.imp import ModelBuilder

    data = executor.dataset(cfg.data)
    PruneAtInit(cfg, store, ModelBuilder.for_data(cfg.model, data), data).run(executor, log)


def show(store) -> str:
    from lth.experiments.results import format_table

    summaries = store.summaries()
    if not summaries:
        return "no finished trainings yet"
    return "\n".join([format_table(summaries), *collapse_lines(summaries, store)])


def section_of(config: dict) -> PaiSection:
    from lth.config import from_dict

    return from_dict(PaiSection, config.get("pai", {}))


PRUNE_AT_INIT = register(Experiment(
    name="prune_at_init", config=PruneAtInitConfig, run=run, commands=("prune_at_init",), check=check, show=show,
    branches=lambda config, level: branch_names(section_of(config), level),
    report_sections=("pai_vs_imp", "pai_ablations", "pai_layers"), default_preset="mnist1d_mlp_pai",
    help="pruning at initialization (SNIP, GraSP, SynFlow, ...) with sanity checks"))
