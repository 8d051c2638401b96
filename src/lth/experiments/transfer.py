"""Ticket transfer (Morcos et al. 2019, "One ticket to win them all"). `lth transfer RUN --preset TARGET`.

A ticket found by a source IMP run (its mask and θ_0, or θ_k when the source rewinds) is trained on a target:
another dataset of the same input shape (MNIST → Fashion-MNIST), or the same dataset with another optimizer
(Adam → SGD). The target is this command's data and training (preset, file, flags); the model, pruning,
rewinding and seed are the source's.

Per source level, four trainings on the target, all from step 0 of the target's schedule with the
replicate's data order:
- `transfer`:      the source's mask on the source's θ_0 / θ_k;
- `target_ticket`: the ticket IMP finds on the target itself (the target's IMP run with the same model,
                   pruning and seed; trained as needed in the same output folder, or found there, and copied);
- `random_prune`:  a random mask with the transferred mask's per-layer counts, on the source's weights;
- `reinit`:        the transferred mask on a fresh initialization.
Level 0 is the dense network on the target. Layers whose shape differs between source and target (the
output layer when the class counts differ) are re-initialized, with a random mask of the source layer's
density. A target with another input shape is refused: no mask fits it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from lth.config import ImpConfig, hashed_dict
from lth.config.fields import _extent, _local
from lth.errors import ConfigError
from lth.experiments.base import Experiment, register
from lth.names import DENSE, RANDOM_PRUNE, REINIT, TICKET
from lth.seeds import seed_for

TRANSFER, TARGET_TICKET = "transfer", "target_ticket"
CONTROLS = (TARGET_TICKET, RANDOM_PRUNE, REINIT)


@dataclass(frozen=True)
class TransferSection:
    """Which source run's tickets, which of its levels, which controls."""

    source: str = _local("")
    """The IMP run folder (`lth run`) whose tickets are transferred (also the first bare argument)."""
    source_hash: str = ""
    """The source run's config hash, read from its folder: part of this run's identity (not a flag to set)."""
    levels: tuple[int, ...] = _extent(())
    """Source levels to transfer (empty: every pruned level whose ticket the source has trained)."""
    controls: tuple[str, ...] = _extent(CONTROLS)
    """target_ticket (IMP on the target), random_prune (random mask, same per-layer counts), reinit (the
    transferred mask on a fresh init)."""

    def check(self) -> None:
        if any(level < 1 for level in self.levels):
            raise ConfigError(f"--transfer.levels takes pruned levels >= 1 of the source run, got {self.levels}")
        unknown = [c for c in self.controls if c not in CONTROLS]
        if unknown:
            raise ConfigError(f"unknown control(s) {unknown} in --transfer.controls; choose from "
                              f"{', '.join(CONTROLS)}, or give none")


@dataclass(frozen=True)
class TransferConfig(ImpConfig):
    """The target's data and training; the model, pruning, lottery settings and seed are the source's."""

    experiment = "transfer"

    transfer: TransferSection = field(default_factory=TransferSection)

    def folder_mode(self) -> str:
        return "transfer"


def resolve(cfg: TransferConfig) -> TransferConfig:
    from lth.experiments.sources import read_source

    if not cfg.transfer.source:
        return cfg
    store, source = read_source(cfg.transfer.source, "--transfer.source")
    cfg = replace(cfg, model=source.model, prune=source.prune, lottery=source.lottery, seed=source.seed)
    return replace(cfg, transfer=replace(cfg.transfer, source_hash=store.record()["hash"]))


def check(cfg: TransferConfig, data) -> None:
    from lth.data import DATASETS
    from lth.experiments.sources import (
        check_imp_part,
        check_source_levels,
        read_source,
        source_levels,
    )

    section = cfg.transfer
    if not section.source:
        raise ConfigError("lth transfer needs the source run whose tickets it transfers: `lth transfer RUN "
                          "--preset TARGET` (RUN: a folder made by `lth run`)")
    store, source = read_source(section.source, "--transfer.source")
    shape = DATASETS[source.data.dataset].input_shape
    if tuple(shape) != tuple(data.input_shape):
        raise ConfigError(f"the source run {store.root.name} was trained on {source.data.dataset} (input "
                          f"{tuple(shape)}) but the target {cfg.data.dataset} has input {tuple(data.input_shape)}: "
                          "a ticket's mask fits only a network of the same input shape; transfer to a dataset of "
                          f"input {tuple(shape)}")
    if hashed_dict(source.data) == hashed_dict(cfg.data) and hashed_dict(source.train) == hashed_dict(cfg.train):
        raise ConfigError(f"the target's dataset and training are the source's ({source.data.dataset}, "
                          f"{source.train.optimizer} lr {source.train.lr:g}): nothing would be transferred; change "
                          "the dataset (--data.dataset or --preset) or the optimizer (--train.optimizer)")
    replicates = source.lottery.replicates
    if section.levels:
        check_source_levels(store, section.levels, replicates, "--transfer.levels")
    elif not source_levels(store, replicates):
        raise ConfigError(f"the source run {store.root} has no finished pruned level to transfer; resume it with "
                          "`lth run` first")
    if TARGET_TICKET in section.controls:
        check_imp_part(cfg, max(levels_of(cfg, store)), data)


def levels_of(cfg: TransferConfig, source) -> list[int]:
    from lth.experiments.sources import source_levels

    return sorted(set(cfg.transfer.levels)) or source_levels(source, cfg.lottery.replicates)


class Transfer:
    def __init__(self, cfg: TransferConfig, store, source, target, build: Callable[[int], Any], levels: list[int]):
        self.cfg, self.store, self.source, self.target, self.build = cfg, store, source, target, build
        self.levels = levels
        self._masks: dict[tuple[int, int, str], Any] = {}

    def seed(self, replicate: int) -> int:
        return seed_for("init", self.cfg.seed, replicate)

    def branches(self, level: int) -> list[str]:
        return [DENSE] if level == 0 else [TRANSFER, *self.cfg.transfer.controls]

    # -- what the transferred network starts from --------------------------------------------------
    def transferred(self, replicate: int, level: int) -> dict:
        """The source's θ_0 (level 0) or rewound weights, with every tensor whose shape the target changes
        taken from a fresh target network."""
        from lth.experiments.sources import rewind_weights

        theirs = rewind_weights(self.source, replicate, level > 0 and not self.cfg.lottery.resets)
        fresh = self.build(seed_for("transfer_reinit", self.cfg.seed, replicate)).state_dict()
        return {k: theirs[k] if k in theirs and theirs[k].shape == v.shape else v for k, v in fresh.items()}

    def mask(self, replicate: int, level: int, branch: str):
        """The source's mask of `level` fitted to the target (a reshaped layer gets a random mask of its
        density), saved as this run's level mask; random_prune's own mask in its unit folder."""
        import torch

        from lth.prune import Mask, random_mask_like
        from lth.store import Unit

        key = (replicate, level, RANDOM_PRUNE if branch == RANDOM_PRUNE else TRANSFER)
        if key in self._masks:
            return self._masks[key]
        template = self.build(self.seed(replicate))
        path = self.store.mask_path(replicate, level)
        if not path.exists():
            theirs = Mask.load(self.source.mask_path(replicate, level))
            g = torch.Generator().manual_seed(seed_for("transfer_output_mask", self.cfg.seed, replicate, level))
            params = dict(template.named_parameters())
            fitted = {}
            for name, keep in theirs.items():
                if keep.shape == params[name].shape:
                    fitted[name] = keep
                else:  # the same fraction kept, at random positions
                    count = round(keep.float().mean().item() * params[name].numel())
                    flat = torch.zeros(params[name].numel(), dtype=torch.bool)
                    flat[torch.randperm(flat.numel(), generator=g)[:count]] = True
                    fitted[name] = flat.view(params[name].shape)
            Mask(fitted).save(path)
        mask = Mask.load(path, template)
        if key[2] == RANDOM_PRUNE:
            path = self.store.unit_mask_path(Unit(replicate, level, RANDOM_PRUNE))
            if not path.exists():
                g = torch.Generator().manual_seed(seed_for("transfer_random_prune", self.cfg.seed, replicate, level))
                random_mask_like(mask, g).save(path)
            mask = Mask.load(path, template)
        self._masks[key] = mask
        return mask

    # -- trainings -----------------------------------------------------------------------------------
    def job(self, replicate: int, level: int, branch: str, *_deps):
        from functools import partial

        from lth.executors import TrainJob
        from lth.store import Unit

        unit = Unit(replicate, level, branch)
        if self.store.is_done(unit) or branch == TARGET_TICKET or (level == 0 and self.target is not None):
            return None  # finished, or copied from the target's IMP run
        if branch == REINIT:
            start = self.build(seed_for("reinit", self.cfg.seed, replicate, level, REINIT)).state_dict()
        else:
            start = self.transferred(replicate, level)
        train = replace(self.cfg.train, data_seed=seed_for("data", self.cfg.train.data_seed, replicate))
        return TrainJob(key=unit.key, build=partial(self.build, self.seed(replicate)), train=train, start=start,
                        mask=None if level == 0 else self.mask(replicate, level, branch), data=self.cfg.data,
                        augment=self.cfg.data.augment, resume_path=self.store.resume_path(unit),
                        checkpoint_seconds=self.cfg.checkpoint_seconds)

    def record(self, replicate: int, level: int, branch: str, result):
        from lth.experiments.sources import copy_result
        from lth.fileio import save_weights
        from lth.records import Summary
        from lth.store import Unit

        unit = Unit(replicate, level, branch)
        if self.store.is_done(unit):
            return self.store.summary(unit)
        if result is None:  # the target's own IMP run trained it
            return copy_result(self.target, Unit(replicate, level, TICKET), self.store, unit)
        if branch in (TRANSFER, DENSE):
            save_weights(result.final, self.store.final_path(unit))
        pm = 100.0 if level == 0 else 100 * self.mask(replicate, level, branch).density()
        summary = Summary.from_dict({"replicate": replicate, "level": level, "branch": branch,
                                     "remaining_percent": pm, "start_step": 0, **result.summary,
                                     "seconds": round(result.seconds, 3)})
        self.store.write_result(unit, result.metrics, summary)
        return summary

    def submit(self, executor) -> list[list]:
        out = []
        for level in [0, *self.levels]:
            handles = []
            for r in range(self.cfg.lottery.replicates):
                for branch in self.branches(level):
                    job = executor.submit(self.job, r, level, branch)
                    handles.append(executor.submit(self.record, r, level, branch, executor.train(job)))
            out.append(handles)
        return out

    def run(self, executor, log: Callable[[str], None]) -> None:
        from lth.experiments.results import format_level, level_rows

        log(f"run folder: {self.store.root}")
        for i, handles in enumerate(self.submit(executor)):
            summaries = executor.gather(handles)
            log(format_level(level_rows(summaries, summaries[0].level), header=i == 0))


def run(cfg: TransferConfig, executor, store, log: Callable[[str], None] = print) -> None:
    from lth.experiments.imp import ModelBuilder, _plan, schedule_of
    from lth.experiments.sources import imp_part, source_store
    from lth.store import RunStore

    data = executor.dataset(cfg.data)
    source = RunStore.open(cfg.transfer.source)
    levels = levels_of(cfg, source)
    target = None
    if TARGET_TICKET in cfg.transfer.controls:
        target = source_store(cfg, "", max(levels), executor, log)
    build = ModelBuilder.for_data(cfg.model, data)
    imp = imp_part(cfg, max(levels))
    store.write_plan({"pm_percent": schedule_of(imp, _plan(imp, build(cfg.seed))), "levels": levels})
    Transfer(cfg, store, source, target, build, levels).run(executor, log)


def show(store) -> str:
    from lth.experiments.results import format_table

    summaries = store.summaries()
    return format_table(summaries) if summaries else "no finished trainings yet"


def expected_branches(config: dict, level: int) -> list[str]:
    section = config.get("transfer", {})
    if level == 0:
        return [DENSE]
    levels = section.get("levels") or []
    if levels and level not in levels:
        return []
    return [TRANSFER, *section.get("controls", CONTROLS)]


TRANSFER_EXPERIMENT = register(Experiment(
    name="transfer", config=TransferConfig, run=run, commands=("transfer",), check=check, show=show,
    positional=("transfer.source",), resolve=resolve, branches=expected_branches, report_sections=("transfer",),
    help="train a source run's tickets on another dataset or optimizer, against three controls"))
