"""Early-bird tickets (You et al. 2020). `lth early_bird RUN --early_bird.levels 2 5 8`.

During the dense training, the magnitude mask of a level's sparsity is drawn at every evaluation point (the
one-shot mask of the level's per-layer counts, as IMP's plan gives them). A FIFO keeps the last `window`
masks; the early-bird ticket is drawn at the first point where the normalized Hamming distances from the
newest mask to the others are all at most ε. That ticket (the drawn mask on θ_0, or θ_k when the source
rewinds) is trained like IMP's ticket of the level and compared with it (`imp_ticket`, copied from the
source run).

How the masks are drawn: the dense training saves its weights at every evaluation point (`save_at`), and the
masks, distances and the draw are computed from those files afterwards. The training is then the source's
dense training exactly (same θ_0 and data order), nothing inside the training loop changes, a killed run
resumes like any other, and the distance curve is recorded over the whole training, past the draw. The
training does not actually stop at the draw: the compute the draw saves is reported in iterations (IMP needs
the dense training and L − 1 pruned trainings to find level L's mask; early-bird needs the draw step).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from lth.config import ImpConfig
from lth.config.fields import _extent, _local
from lth.errors import ConfigError
from lth.experiments.base import Experiment, register
from lth.names import DENSE, TICKET
from lth.seeds import seed_for

EARLY_BIRD, IMP_TICKET = "early_bird", "imp_ticket"


@dataclass(frozen=True)
class EarlyBirdSection:
    """Which levels' tickets to draw early, and when a mask counts as settled."""

    source: str = _local("")
    """A finished IMP run folder (`lth run`) to compare with (also the first bare argument); empty: train this
    config's IMP run as needed."""
    levels: tuple[int, ...] = _extent(())
    """IMP levels whose sparsity is drawn (empty: every pruned level the source has trained)."""
    eps: float = 0.1
    """The draw: every distance in the window at most this (normalized Hamming distance)."""
    window: int = 5
    """Masks in the FIFO: the newest and the window − 1 before it."""

    def check(self) -> None:
        if any(level < 1 for level in self.levels):
            raise ConfigError(f"--early_bird.levels takes pruned IMP levels >= 1, got {self.levels}")
        if not (math.isfinite(self.eps) and 0 <= self.eps < 1):
            raise ConfigError(f"--early_bird.eps is a fraction of the weights in [0, 1), got {self.eps}")
        if self.window < 2:
            raise ConfigError(f"--early_bird.window must be at least 2 (the newest mask and one before), got "
                              f"{self.window}")


@dataclass(frozen=True)
class EarlyBirdConfig(ImpConfig):
    experiment = "early_bird"

    early_bird: EarlyBirdSection = field(default_factory=EarlyBirdSection)

    def folder_mode(self) -> str:
        return "early_bird"


def resolve(cfg: EarlyBirdConfig) -> EarlyBirdConfig:
    from lth.experiments.sources import resolve_source

    return resolve_source(cfg, "early_bird")


def check(cfg: EarlyBirdConfig, data) -> None:
    from lth.experiments.sources import check_source

    check_source(cfg, "early_bird", data, finished=True)


def eval_steps(cfg: EarlyBirdConfig, data) -> tuple[list[int], int]:
    """The steps the training loop evaluates at (0, every eval_every, and the end), and the budget."""
    from lth.experiments.sources import steps_per_epoch
    from lth.train.loop import resolve_budget

    total, every = resolve_budget(cfg.train, steps_per_epoch(cfg, data))
    return sorted({*range(0, total, every), total}), total


class EarlyBird:
    def __init__(self, cfg: EarlyBirdConfig, store, source, build: Callable[[int], Any], levels: list[int],
                 steps: list[int], total: int, k: int):
        self.cfg, self.store, self.source, self.build, self.levels = cfg, store, source, build, levels
        self.steps, self.total, self.k = steps, total, k
        self._draws: dict[tuple[int, int], dict] = {}

    def seed(self, replicate: int) -> int:
        return seed_for("init", self.cfg.seed, replicate)

    def train_cfg(self, replicate: int):
        return replace(self.cfg.train, data_seed=seed_for("data", self.cfg.train.data_seed, replicate))

    # -- the dense training and its snapshots --------------------------------------------------------
    def dense_job(self, replicate: int):
        from functools import partial

        from lth.executors import TrainJob
        from lth.experiments.sources import rewind_weights
        from lth.store import Unit

        unit = Unit(replicate, 0, DENSE)
        if self.store.is_done(unit):
            return None
        save_at = {s: self.store.theta_path(replicate, s) for s in self.steps
                   if not self.store.theta_path(replicate, s).exists()}
        return TrainJob(key=unit.key, build=partial(self.build, self.seed(replicate)), train=self.train_cfg(replicate),
                        start=rewind_weights(self.source, replicate, False), data=self.cfg.data,
                        augment=self.cfg.data.augment, save_at=save_at, resume_path=self.store.resume_path(unit),
                        checkpoint_seconds=self.cfg.checkpoint_seconds)

    def snapshots_job(self, replicate: int, *_deps):
        """The snapshots a pending draw needs, when the dense training finished without them."""
        from functools import partial

        from lth.experiments.sources import rewind_weights, snapshot_job
        from lth.store import Unit

        if all(self.store.is_done(Unit(replicate, level, EARLY_BIRD)) for level in self.levels):
            return None
        return snapshot_job(self.cfg, self.store, partial(self.build, self.seed(replicate)), replicate, self.steps,
                            rewind_weights(self.source, replicate, False))

    def record_dense(self, replicate: int, result):
        from lth.records import Summary
        from lth.store import Unit

        unit = Unit(replicate, 0, DENSE)
        if result is None:
            return self.store.summary(unit)
        summary = Summary.from_dict({"replicate": replicate, "level": 0, "branch": DENSE, "remaining_percent": 100.0,
                                     "start_step": 0, **result.summary, "seconds": round(result.seconds, 3)})
        self.store.write_result(unit, result.metrics, summary)
        return summary

    # -- the draw ------------------------------------------------------------------------------------
    def draw(self, replicate: int, level: int, *_deps) -> dict:
        """The masks of the level's sparsity at every evaluation point, their window distances, the draw, and
        (saved as the level's mask) the drawn mask. Recomputed from the snapshots when asked again."""
        from lth.experiments.imp import _plan
        from lth.fileio import load_weights
        from lth.prune import Mask, prune
        from lth.prune.early_bird import early_bird

        if (replicate, level) in self._draws:
            return self._draws[replicate, level]
        template = self.build(self.seed(replicate))
        plan = _plan(self.cfg, template)
        ones = Mask.ones_like(template, list(plan.sizes))
        imp_mask = Mask.load(self.source.mask_path(replicate, level), template)
        masks = []
        for s in self.steps:
            weights = load_weights(self.store.theta_path(replicate, s),
                                   fix="It is a snapshot of the dense training; delete "
                                       f"{self.store.level_dir(replicate, 0)} to retrain it.")
            masks.append(prune(weights, ones, plan, rounds=level, criterion="magnitude"))
        section = self.cfg.early_bird
        bird = early_bird(masks, section.eps, section.window)
        index = bird.index if bird.index is not None else len(masks) - 1
        path = self.store.mask_path(replicate, level)
        if not path.exists():
            masks[index].save(path)
        drawn, mask_step = bird.index is not None, self.steps[index]
        imp_find = self.total + (level - 1) * (self.total - self.k)
        # Never drawn: the ticket is the last mask (the one-shot mask of the trained network), and nothing saved.
        out = {"draw_step": mask_step if drawn else None, "mask_step": mask_step, "eps": section.eps,
               "window": section.window, "imp_find_iterations": imp_find,
               "saved_iterations": imp_find - mask_step if drawn else None,
               "distance_to_imp": masks[index].hamming(imp_mask), "iou_with_imp": masks[index].jaccard(imp_mask),
               "steps": self.steps, "window_distance": bird.distances,
               "imp_distance": [m.hamming(imp_mask) for m in masks]}
        self._draws[replicate, level] = out
        return out

    def ticket_job(self, replicate: int, level: int, draw: dict):
        from functools import partial

        from lth.executors import TrainJob
        from lth.experiments.sources import rewind_weights
        from lth.prune import Mask
        from lth.store import Unit

        unit = Unit(replicate, level, EARLY_BIRD)
        if self.store.is_done(unit):
            return None
        mask = Mask.load(self.store.mask_path(replicate, level), self.build(self.seed(replicate)))
        return TrainJob(key=unit.key, build=partial(self.build, self.seed(replicate)), train=self.train_cfg(replicate),
                        start=rewind_weights(self.source, replicate, self.k > 0), mask=mask, data=self.cfg.data,
                        augment=self.cfg.data.augment, start_step=self.k, resume_path=self.store.resume_path(unit),
                        checkpoint_seconds=self.cfg.checkpoint_seconds)

    def record_ticket(self, replicate: int, level: int, draw: dict, result):
        from lth.prune import Mask
        from lth.records import Summary
        from lth.store import Unit

        unit = Unit(replicate, level, EARLY_BIRD)
        if result is None:
            return self.store.summary(unit)
        mask = Mask.load(self.store.mask_path(replicate, level))
        summary = Summary.from_dict({"replicate": replicate, "level": level, "branch": EARLY_BIRD,
                                     "remaining_percent": 100 * mask.density(), "start_step": self.k,
                                     **result.summary, **draw, "seconds": round(result.seconds, 3)})
        self.store.write_result(unit, result.metrics, summary)
        return summary

    def copy_imp(self, replicate: int, level: int):
        from lth.experiments.sources import copy_result
        from lth.store import Unit

        return copy_result(self.source, Unit(replicate, level, TICKET), self.store, Unit(replicate, level, IMP_TICKET),
                           imp_find_iterations=self.total + (level - 1) * (self.total - self.k))

    def submit(self, executor) -> list:
        from lth.experiments.sources import drop_snapshot_state

        out = []
        for r in range(self.cfg.lottery.replicates):
            dense = executor.submit(self.record_dense, r, executor.train(executor.submit(self.dense_job, r)))
            snaps = executor.train(executor.submit(self.snapshots_job, r, dense))
            ready = executor.submit(drop_snapshot_state, self.store, r, snaps)
            out.append(dense)
            for level in self.levels:
                draw = executor.submit(self.draw, r, level, ready)
                job = executor.submit(self.ticket_job, r, level, draw)
                out.append(executor.submit(self.record_ticket, r, level, draw, executor.train(job)))
                out.append(executor.submit(self.copy_imp, r, level))
        return out

    def run(self, executor, log: Callable[[str], None]) -> None:
        log(f"run folder: {self.store.root}")
        executor.gather(self.submit(executor))
        log(show(self.store))


def run(cfg: EarlyBirdConfig, executor, store, log: Callable[[str], None] = print) -> None:
    from lth.experiments.imp import rewind_step
    from lth.experiments.sources import begin

    source, levels, build, data = begin(cfg, "early_bird", executor, store, log)
    steps, total = eval_steps(cfg, data)
    EarlyBird(cfg, store, source, build, levels, steps, total, rewind_step(cfg, data)).run(executor, log)


def show(store) -> str:
    from lth.experiments.results import aggregate

    rows = {(r["level"], r["branch"]): r for r in aggregate(store.summaries())}
    levels = sorted({lv for lv, b in rows if b == EARLY_BIRD})
    if not levels:
        return "no finished early-bird tickets yet"
    lines = [f"{'level':>5} {'P_m %':>7} {'drawn at':>9} {'IMP finds at':>12} {'saved it':>9} {'d(EB,IMP) %':>11} "
             f"{'EB test@end':>11} {'IMP test@end':>12}"]
    for lv in levels:
        eb, imp = rows[lv, EARLY_BIRD], rows.get((lv, IMP_TICKET))

        def mean(row, key, scale=1.0, fmt="{:.1f}"):
            return fmt.format(scale * row[key]["mean"]) if row is not None and key in row else "-"

        drawn = mean(eb, "draw_step", fmt="{:.0f}") if "draw_step" in eb else "never"
        lines.append(f"{lv:>5} {eb['remaining_percent']:>7.2f} {drawn:>9} "
                     f"{mean(eb, 'imp_find_iterations', fmt='{:.0f}'):>12} {mean(eb, 'saved_iterations', fmt='{:.0f}'):>9} "
                     f"{mean(eb, 'distance_to_imp', 100):>11} {mean(eb, 'final_test_acc', 100):>11} "
                     f"{mean(imp, 'final_test_acc', 100):>12}")
    return "\n".join(lines)


def expected_branches(config: dict, level: int) -> list[str]:
    if level == 0:
        return [DENSE]
    levels = config.get("early_bird", {}).get("levels") or []
    return [EARLY_BIRD, IMP_TICKET] if not levels or level in levels else []


EARLY_BIRD_EXPERIMENT = register(Experiment(
    name="early_bird", config=EarlyBirdConfig, run=run, commands=("early_bird",), check=check, show=show,
    positional=("early_bird.source",), resolve=resolve, branches=expected_branches,
    report_sections=("early_bird",),
    help="draw each level's mask early in the dense training (early-bird) and train it against IMP's"))
