"""What the experiments that study IMP's tickets share (instability, transfer, early-bird, gradual): a source
IMP run, its settings, its levels and weights, and results copied from it.

The source is a finished `lth run` folder (`--<section>.source RUN`), or, when none is given, the IMP run of
the experiment's own config, trained (or resumed, or found finished) in the same output folder. Its
settings become the experiment's, so the experiment's run folder is named by what it measured, not by where
the source lies: two sources with the same config give the same results and share one folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import fields, replace
from typing import Any

from lth.config import ImpConfig, from_dict, to_dict
from lth.errors import ConfigError
from lth.seeds import seed_for

IMP_SECTIONS = ("data", "model", "train", "prune", "lottery", "seed")
"""Everything that decides an IMP run's results."""


def read_source(path: str, flag: str) -> tuple[Any, ImpConfig]:
    """The RunStore and config of the IMP run at `path`; refuses a folder that is not one lth can build on."""
    from lth.store import RunStore

    store = RunStore.open(path)
    record = store.record()
    if record["experiment"] != "imp":
        raise ConfigError(f"{flag} {path} is a run of experiment {record['experiment']!r}; give a run folder made by "
                          "`lth run` (iterative magnitude pruning)")
    cfg = from_dict(ImpConfig, record["config"])
    if cfg.model.name.startswith("custom:"):
        raise ConfigError(f"{flag} {path} is a find_tickets run of your own model, which lth cannot rebuild; give a "
                          "run of a registered model (`lth models`)")
    return store, cfg


def adopt(cfg: Any, source: ImpConfig, sections: Iterable[str] = IMP_SECTIONS) -> Any:
    """`cfg` with the source's `sections` (and its preset name, for the folder's name). The data folder stays
    the one given here, if any: it says where the files are, not what they are."""
    changes = {name: getattr(source, name) for name in sections}
    if "data" in changes and cfg.data.data_dir:
        changes["data"] = replace(changes["data"], data_dir=cfg.data.data_dir)
    return replace(cfg, preset=source.preset, **changes)


def imp_part(cfg: Any, levels: int) -> ImpConfig:
    """The IMP run that `cfg` builds on, asked for `levels` levels and no controls (only its tickets and
    masks are used; controls, being extent, can still be added to the same run folder with `lth run`)."""
    names = {f.name for f in fields(ImpConfig)}
    imp = from_dict(ImpConfig, {k: v for k, v in to_dict(cfg).items() if k in names})
    return replace(imp, lottery=replace(imp.lottery, levels=levels, target_pm=None, controls=()))


def resolve_source(cfg: Any, section: str) -> Any:
    """An experiment's `resolve`: with `--<section>.source RUN`, the settings of RUN."""
    path = getattr(cfg, section).source
    return adopt(cfg, read_source(path, f"--{section}.source")[1]) if path else cfg


def check_source(cfg: Any, section: str, data, *, finished: bool) -> None:
    """An experiment's refusals about its source: every level asked for is in the source run (with its ticket
    trained, when `finished`), or, without a source, the IMP run to train can reach them."""
    fields_ = getattr(cfg, section)
    flag = f"--{section}"
    if not fields_.source:
        check_imp_part(cfg, max(fields_.levels or (cfg.lottery.levels,)), data)
        return
    store, _ = read_source(fields_.source, f"{flag}.source")
    replicates = cfg.lottery.replicates
    if fields_.levels:
        check_source_levels(store, fields_.levels, replicates, f"{flag}.levels", finished=finished)
    elif not source_levels(store, replicates):
        raise ConfigError(f"the source run {store.root} has no trained pruned level yet; resume it with `lth run` "
                          "first")


def begin(cfg: Any, section: str, executor, store, log: Callable[[str], None], **plan: Any):
    """An experiment's start: its source run (opened, or trained as needed), the levels it studies (those
    asked for, else every pruned level the source has trained), the model builder, and plan.json."""
    from lth.experiments.imp import ModelBuilder, _plan, schedule_of

    data = executor.dataset(cfg.data)
    fields_ = getattr(cfg, section)
    asked = sorted(set(fields_.levels))
    source = source_store(cfg, fields_.source, max(asked or [cfg.lottery.levels]), executor, log)
    levels = asked or source_levels(source, cfg.lottery.replicates)
    build = ModelBuilder.for_data(cfg.model, data)
    imp = imp_part(cfg, max(levels))
    store.write_plan({"pm_percent": schedule_of(imp, _plan(imp, build(cfg.seed))), "levels": levels, **plan})
    return source, levels, build, data


def steps_per_epoch(cfg: Any, data) -> int:
    from lth.data import Batches

    return Batches(data.train, cfg.train.batch_size, seed=0).steps_per_epoch


def check_imp_part(cfg: Any, levels: int, data) -> None:
    """Refusals for the IMP run trained on demand: its rewind step and its number of levels."""
    from lth.experiments import imp

    imp.check(imp_part(cfg, levels), data)


def source_store(cfg: Any, source: str, levels: int, executor, log: Callable[[str], None]):
    """The source run's store: the one at `source`, or the IMP run of `cfg` trained up to `levels` here."""
    from lth.experiments.imp import Imp, ModelBuilder, rewind_step
    from lth.store import RunStore

    if source:
        return RunStore.open(source)
    imp_cfg = imp_part(cfg, levels)
    data = executor.dataset(imp_cfg.data)
    store = RunStore.for_config(imp_cfg, log=log)
    log(f"source IMP run (trained as needed): {store.root}")
    with store:
        Imp(imp_cfg, store, ModelBuilder.for_data(imp_cfg.model, data), rewind_step(imp_cfg, data),
            data=data).run(executor, log)
    return store


def check_source_levels(store, levels: Iterable[int], replicates: int, flag: str, *, finished: bool = False) -> None:
    """Every level asked for has its mask in the source (and, with `finished`, its trained ticket)."""
    from lth.names import TICKET
    from lth.store import Unit

    have = store.levels_on_disk()
    for level in levels:
        for r in range(replicates):
            missing = not store.mask_path(r, level).exists() or (
                finished and not store.is_done(Unit(r, level, TICKET)))
            if missing:
                done = [lv for lv in have if store.mask_path(r, lv).exists()
                        and (not finished or store.is_done(Unit(r, lv, TICKET)))]
                raise ConfigError(f"{flag}: level {level} is not in the source run {store.root} for replicate {r} "
                                  f"(it has levels {_span(done)}); choose from those, or extend the source with "
                                  f"`lth run` and --lottery.levels {level}")


def _span(levels: list[int]) -> str:
    return ", ".join(map(str, levels)) if levels else "none"


def source_levels(store, replicates: int) -> list[int]:
    """The pruned levels (>= 1) whose trained tickets every replicate of the source has."""
    from lth.names import TICKET
    from lth.store import Unit

    return [lv for lv in store.levels_on_disk() if lv > 0
            and all(store.mask_path(r, lv).exists() and store.is_done(Unit(r, lv, TICKET)) for r in range(replicates))]


def copy_result(source, src_unit, store, unit, **extra) -> Any:
    """A finished training of the source, recorded in `store` as `unit` (with `extra` fields): the comparisons
    a report draws then need nothing outside the run folder."""
    from lth.records import Summary

    if store.is_done(unit):
        return store.summary(unit)
    record = {**source.summary(src_unit).to_dict(), **extra, "replicate": unit.replicate, "level": unit.level,
              "branch": unit.branch, "copied_from": f"{source.root.name}/{src_unit.key}"}
    summary = Summary.from_dict(record)
    store.write_result(unit, source.metrics(src_unit), summary)
    return summary


def rewind_weights(source, replicate: int, rewound: bool) -> dict:
    """θ_0 of the source's replicate, or (`rewound`) θ_k of its dense training, which IMP keeps when it rewinds."""
    from lth.fileio import load_weights

    path = source.rewind_path(replicate) if rewound else source.init_path(replicate)
    return load_weights(path, fix=f"It belongs to the source run {source.root}; resume that run with `lth run` to "
                                  "recreate it.")


def snapshot_job(cfg: Any, store, build: Callable[[], Any], replicate: int, steps: Iterable[int], start: dict):
    """The dense training of a replicate once more, only to save θ_s at the `steps` whose files are missing
    (asked for after the training that saves them finished); None when none is missing. Its unit
    (`rep0/level00/snapshots`) records nothing: `drop_snapshot_state` removes its resume state after it."""
    from lth.executors import TrainJob
    from lth.store import Unit

    missing = [s for s in steps if not store.theta_path(replicate, s).exists()]
    if not missing:
        return None
    unit = Unit(replicate, 0, "snapshots")
    train = replace(cfg.train, data_seed=seed_for("data", cfg.train.data_seed, replicate))
    return TrainJob(key=unit.key, build=build, train=train, start=start, data=cfg.data, augment=cfg.data.augment,
                    save_at={s: store.theta_path(replicate, s) for s in missing},
                    resume_path=store.resume_path(unit), checkpoint_seconds=cfg.checkpoint_seconds)


def drop_snapshot_state(store, replicate: int, *_done) -> None:
    from lth.store import Unit

    store.resume_path(Unit(replicate, 0, "snapshots")).unlink(missing_ok=True)
