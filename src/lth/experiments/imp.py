"""Iterative magnitude pruning (Frankle & Carbin 2019), with rewinding (Frankle et al. 2020), one-shot pruning,
controls and replicates, resumable at any moment. `lth run`.

Per replicate the levels are a chain: the dense training, then the level-1 mask (pruning the trained
network), the level-1 ticket, the level-2 mask, and so on. A level's controls depend only on its mask, and
replicates are independent. `run` hands that graph to the executor, then gathers and prints the levels in
order. Each task reads and writes the run folder, and skips what is already there, so any interrupted run
resumes where it stopped.

What each branch of a level starts from (they are then trained identically: same data order, budget and
start step):
- ticket:        the level's mask on the rewound weights (θ_0, or θ_k with rewinding);
- reinit:        the same mask on a fresh draw from the same initializer (Frankle & Carbin's control);
- random_prune:  a random mask with the ticket's per-layer counts, on the rewound weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lth.config import ImpConfig, LotteryConfig, PruneConfig
from lth.errors import ConfigError, RunFolderError
from lth.experiments.base import (
    Experiment,
    ShipsWithoutData,
    criterion_batches,
    draw_init,
    init_state,
    launch,
    register,
)
from lth.names import RANDOM_PRUNE, TICKET, is_reinit, reinit_branch
from lth.seeds import seed_for


def branch_names(level: int, lottery: LotteryConfig) -> list[str]:
    """The trainings of a level: the dense network at level 0, the ticket and its controls after."""
    if level == 0:
        return [TICKET]
    names = [TICKET]
    for c in lottery.controls:
        names += [reinit_branch(d) for d in range(lottery.reinit_draws)] if c == "reinit" else [c]
    return names


@dataclass(frozen=True)
class ModelBuilder:
    """Builds a registered model for a dataset's shapes, initialized from a seed (picklable)."""

    model: Any
    input_shape: tuple[int, ...]
    num_classes: int
    task: str = "classify"

    @classmethod
    def for_data(cls, model, data) -> "ModelBuilder":
        return cls(model, tuple(data.input_shape), data.num_classes, getattr(data, "task", "classify"))

    def __call__(self, seed: int):
        from lth.models import build_model

        return build_model(self.model, input_shape=self.input_shape, num_classes=self.num_classes, seed=seed,
                           task=self.task)


def _plan(cfg: ImpConfig, template):
    from lth.prune import PrunePlan

    return PrunePlan.for_model(template, cfg.prune)


def schedule_of(cfg: ImpConfig, plan) -> list[float]:
    """P_m of levels 0..L, stopping at cfg.lottery.levels or the first level at or below target_pm."""
    from lth.prune import pm_schedule
    from lth.prune.schedule import useful_levels

    lot = cfg.lottery
    rates = plan.rates if plan.strategy == "layerwise" else next(iter(plan.rates.values()))
    useful = useful_levels(plan.sizes, rates, plan.pruned)
    if lot.target_pm is None and lot.levels > useful:
        raise ConfigError(f"--lottery.levels {lot.levels}: P_m stops changing after level {useful} (pruning rounds "
                          f"then remove no weight), so later levels would retrain the same sparsity; use at most "
                          f"--lottery.levels {useful}")
    schedule = pm_schedule(plan.sizes, rates, min(lot.levels, useful), pruned=plan.pruned)
    if lot.target_pm is not None:
        for i, pm in enumerate(schedule):
            if pm <= lot.target_pm:
                return schedule[: i + 1]
    return schedule


def rewind_step(cfg: ImpConfig, data) -> int:
    """k of θ_k (0: reset to θ_0); refuses a k at or beyond the budget."""
    from lth.data import Batches
    from lth.train import to_iterations

    spe = Batches(data.train, cfg.train.batch_size, seed=0).steps_per_epoch
    total = to_iterations(cfg.train.budget, spe, "--train.budget")
    k = to_iterations(cfg.lottery.rewind, spe, "--lottery.rewind")
    if k >= total:
        raise ConfigError(f"--lottery.rewind {cfg.lottery.rewind} is step {k}, at or beyond the training budget of "
                          f"{total} iterations; rewind to an early step (0it for reset, or a few percent of training)")
    return k


PROVIDES = frozenset({"initial", "build", "batches", "input_shape", "plan", "counts"})
"""What IMP's criterion context holds (beyond weights, mask, names, generator); find_tickets has no data."""


def check(cfg: ImpConfig, data) -> None:
    """What needs the data and the model: the rewind step, the pruning plan, the levels, the criterion."""
    from lth.prune import check_criterion

    rewind_step(cfg, data)
    template = ModelBuilder.for_data(cfg.model, data)(cfg.seed)
    schedule_of(cfg, _plan(cfg, template))
    check_criterion(cfg.prune.criterion, PROVIDES, strategy=cfg.prune.strategy, where="IMP")


class Imp(ShipsWithoutData):
    """The steps of one IMP run. Each is a function of where it sits (replicate, level, branch) that reads and
    writes the run folder and skips what is already there."""

    def __init__(self, cfg: ImpConfig, store, build: Callable[[int], Any], k: int, *,
                 train_fn: Callable | None = None, data=None):
        self.cfg, self.store, self.build, self.k = cfg, store, build, k
        self.train_fn, self._data, self._has_data = train_fn, data, data is not None
        self.plan = _plan(cfg, build(cfg.seed))
        self.schedule = schedule_of(cfg, self.plan)
        self._masks: dict[tuple[int, int], Any] = {}
        self._run = store.record()["hash"]

    def place(self, file: str, replicate: int, level: int | None = None, branch: str | None = None) -> dict:
        """Where a weights or mask file belongs: recorded in it when written, checked when read back, so that
        a file copied from another replicate, level, branch or run is refused instead of used."""
        out = {"run": self._run, "file": file, "replicate": replicate}
        return {**out, **({"level": level} if level is not None else {}), **({"branch": branch} if branch else {})}

    def seed(self, replicate: int) -> int:
        return seed_for("init", self.cfg.seed, replicate)

    def unit(self, replicate: int, level: int, branch: str):
        from lth.store import Unit

        return Unit(replicate, level, branch)

    # -- weights the branches start from -----------------------------------------------------------
    def init(self, replicate: int) -> None:
        """θ_0 of the replicate, drawn once and kept in the run folder."""
        draw_init(self.store, self.build, self.seed(replicate), replicate, self.place("init", replicate))

    def _init_state(self, replicate: int) -> dict:
        return init_state(self.store, replicate, self.place("init", replicate))

    def _rewind_state(self, replicate: int) -> dict:
        from lth.fileio import load_weights

        if self.k == 0:
            return self._init_state(replicate)
        return load_weights(self.store.rewind_path(replicate),
                            fix=f"It is θ_k, saved by the dense training; delete {self.store.level_dir(replicate, 0)} "
                                "to retrain the dense network (and so recreate it).")

    # -- masks -------------------------------------------------------------------------------------
    def mask(self, replicate: int, level: int, *_deps) -> Any:
        """The level's mask, computed once from the previous ticket (or, one-shot, the dense network) and kept
        in the run folder. `_deps`: the results it waits for (the source ticket's record)."""
        from lth.prune import Mask

        if (replicate, level) in self._masks:
            return self._masks[replicate, level]
        path = self.store.mask_path(replicate, level)
        template = self.build(self.seed(replicate))
        place = self.place("mask", replicate, level)
        if path.exists():
            mask = Mask.load(path, template, place)
            self._check_counts(mask, level, path)
        elif level == 0:
            mask = Mask.ones_like(template, list(self.plan.sizes))
        else:
            mask = self._prune(replicate, level)
        if not path.exists():
            mask.save(path, place)
        self._masks[replicate, level] = mask
        return mask

    def _prune(self, replicate: int, level: int):
        """Iterative: prune the previous level's trained ticket. One-shot: prune the trained dense network
        straight to this level's sparsity (the same per-layer counts as iterative pruning reaches)."""
        import torch

        from lth.fileio import load_weights
        from lth.prune import CriterionContext, prune

        source = 0 if self.cfg.lottery.one_shot else level - 1
        final = load_weights(self.store.final_path(self.unit(replicate, source, TICKET)),
                             fix=f"It is the trained ticket of level {source}; delete its folder to retrain it.",
                             place=self.place("final", replicate, source, TICKET))
        base = self.mask(replicate, source)
        generator = torch.Generator().manual_seed(seed_for("prune", self.cfg.seed, replicate, level))
        context = CriterionContext(weights=final, mask=base, names=self.plan.pruned, generator=generator,
                                   initial=self._init_state(replicate),
                                   build=lambda: self.build(self.seed(replicate)), batches=self._batches(replicate),
                                   input_shape=getattr(self.build, "input_shape", None))
        return prune(final, base, self.plan, rounds=level - source, criterion=self.cfg.prune.criterion,
                     context=context)

    def _batches(self, replicate: int):
        """Training batches in a seeded order, for criteria that need data (None without a dataset)."""
        if self.data is None:
            return None
        return criterion_batches(self.data, self.cfg.train.batch_size, self.cfg.seed, replicate)

    def _check_counts(self, mask, level: int, path: Path) -> None:
        """A mask on disk must have the level's sparsity (a mask copied from another level must not train)."""
        from lth.prune import Mask

        ones = Mask({n: t.new_ones(t.shape) for n, t in mask.items()})
        want = self.plan.target_counts(ones, rounds=level)
        if self.plan.counts_of(mask, want) != want:
            raise RunFolderError(f"{path} keeps {100 * mask.density():.2f}% of the weights, but level {level} of this "
                                 f"run keeps {self.schedule[level] if level < len(self.schedule) else '?'}%: the file "
                                 f"was copied or moved from elsewhere. Delete {path.parent} to recompute that level.")

    # -- trainings ---------------------------------------------------------------------------------
    def job(self, replicate: int, level: int, branch: str, *_deps):
        """The TrainJob of one training, or None when it is finished."""
        from functools import partial

        from lth.executors import TrainJob
        from lth.prune import Mask, random_mask_like

        unit = self.unit(replicate, level, branch)
        if self.store.is_done(unit):
            return None
        mask = self.mask(replicate, level)
        save_at: dict[int, Path] = {}
        if level == 0:
            start, step = self._init_state(replicate), 0
            if self.k > 0:
                save_at[self.k] = self.store.rewind_path(replicate)
        else:
            start, step = self._rewind_state(replicate), self.k
            if is_reinit(branch):
                start = self.build(seed_for("reinit", self.cfg.seed, replicate, level, branch)).state_dict()
            elif branch == RANDOM_PRUNE:
                import torch

                path, place = self.store.unit_mask_path(unit), self.place("mask", replicate, level, branch)
                if path.exists():
                    mask = Mask.load(path, self.build(self.seed(replicate)), place)
                    self._check_counts(mask, level, path)
                else:
                    g = torch.Generator().manual_seed(seed_for("random_prune", self.cfg.seed, replicate, level))
                    mask = random_mask_like(mask, g)
                    mask.save(path, place)
        train = replace(self.cfg.train, data_seed=seed_for("data", self.cfg.train.data_seed, replicate))
        return TrainJob(key=unit.key, build=partial(self.build, self.seed(replicate)), train=train, start=start,
                        mask=mask, data=self.cfg.data, augment=self.cfg.data.augment, start_step=step,
                        save_at=save_at, resume_path=self.store.resume_path(unit),
                        checkpoint_seconds=self.cfg.checkpoint_seconds, train_fn=self.train_fn)

    def record(self, replicate: int, level: int, branch: str, result):
        """Store a finished training (the ticket keeps its final weights for the next level's pruning) and
        return its summary; a training finished earlier is read back."""
        from lth.fileio import save_weights
        from lth.records import Summary

        unit = self.unit(replicate, level, branch)
        if result is None:
            summary = self.store.summary(unit)
            pm = 100 * self.mask(replicate, level).density()
            if abs(summary.remaining_percent - pm) > 1e-6 * pm:  # trained at another sparsity than its level's
                path = self.store.unit_dir(unit) / "summary.json"
                raise RunFolderError(f"{path} says P_m {summary.remaining_percent:.4g}%, but the mask of level {level} "
                                     f"keeps {pm:.4g}%: the file was edited, or copied from another run. Delete "
                                     f"{path.parent} to retrain that training.")
            return summary
        if branch == TICKET:
            save_weights(result.final, self.store.final_path(unit), self.place("final", replicate, level, branch))
        mask = self.mask(replicate, level)  # random_prune's mask has the same counts, so the same P_m
        summary = Summary.from_dict({"replicate": replicate, "level": level, "branch": branch,
                                     "remaining_percent": 100 * mask.density(),
                                     "start_step": 0 if level == 0 else self.k, **result.summary,
                                     "seconds": round(result.seconds, 3)})
        self.store.write_result(unit, result.metrics, summary)
        return summary

    # -- the run -----------------------------------------------------------------------------------
    def submit(self, executor) -> list[list]:
        """The whole graph; returns each level's record handles."""
        lot, levels = self.cfg.lottery, []
        records: dict[tuple[int, int], Any] = {}
        for level in range(len(self.schedule)):
            handles = []
            for r in range(lot.replicates):
                if level == 0:
                    ready = executor.submit(self.init, r)
                else:
                    source = 0 if lot.one_shot else level - 1
                    ready = executor.submit(self.mask, r, level, records[r, source])
                for branch in branch_names(level, lot):
                    job = executor.submit(self.job, r, level, branch, ready)
                    rec = executor.submit(self.record, r, level, branch, executor.train(job))
                    if branch == TICKET:
                        records[r, level] = rec
                    handles.append(rec)
            levels.append(handles)
        return levels

    def run(self, executor, log: Callable[[str], None] = print) -> None:
        """Train every level not yet finished, printing each level's results as it completes."""
        from lth.experiments.results import format_level, level_rows

        log(f"run folder: {self.store.root}")
        # The levels this request runs, for readers of the folder (the report): with a target P_m only the
        # model's layer sizes say how many there are.
        self.store.write_plan({"pm_percent": self.schedule})
        for level, handles in enumerate(self.submit(executor)):
            summaries = executor.gather(handles)
            log(format_level(level_rows(summaries, level), header=level == 0))


def run(cfg: ImpConfig, executor, store, log: Callable[[str], None] = print) -> None:
    data = executor.dataset(cfg.data)
    build = ModelBuilder.for_data(cfg.model, data)
    Imp(cfg, store, build, rewind_step(cfg, data), data=data).run(executor, log)


def show(store) -> str:
    from lth.experiments.results import format_table

    summaries = store.summaries()
    return format_table(summaries) if summaries else "no finished trainings yet"


def expected_branches(config: dict, level: int) -> list[str]:
    lot = config.get("lottery", {})
    return branch_names(level, LotteryConfig(controls=tuple(lot.get("controls", ())),
                                             reinit_draws=int(lot.get("reinit_draws", 1))))


IMP = register(Experiment(
    name="imp", config=ImpConfig, run=run, commands=("run", "imp"), check=check, show=show,
    branches=expected_branches,
    help="find winning tickets with IMP and its controls (default: MNIST-1D MLP)"))


def run_imp(cfg: ImpConfig, *, data=None, progress: bool | None = None, log: Callable[[str], None] = print):
    """Run (or resume) the IMP experiment `cfg` on its registered model and dataset; returns its run store.

    Everything is checked before training starts; finished trainings in the run folder are skipped."""
    return launch(cfg, data=data, progress=progress, log=log)


def _fingerprint(model) -> str:
    """The architecture of a user's model (class, parameter names and shapes): part of its run's identity, so
    that another model under the same name gets its own run folder."""
    import hashlib

    text = type(model).__qualname__ + repr([(n, tuple(p.shape)) for n, p in model.named_parameters()])
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def find_tickets(model_fn: Callable[..., Any], train_fn: Callable[..., dict[str, Any]], *,
                 name: str = "custom", prune: PruneConfig | None = None, lottery: LotteryConfig | None = None,
                 seed: int = 0, out_dir: str = "runs", checkpoint_seconds: float = 30.0,
                 log: Callable[[str], None] = print):
    """IMP on your own network and training loop.

    `model_fn()` builds the network (seeded by lth; or `model_fn(seed)`), `train_fn(model, mask)` trains it
    in place with your loop and returns numbers such as {"test_acc": 0.97}. lth prunes by magnitude (or
    `prune.criterion`), resets the survivors to θ_0, trains the controls, and stores everything under
    `out_dir` like `lth run`. `name` names the run folder; the model's architecture is part of the run's
    identity, so another model under the same name gets its own folder.

    With a third parameter, `train_fn(model, mask, loop)` gets an lth.executors.function.Loop: `loop.start_step`
    says where the training starts, `loop.reached(step)` reports progress, `loop.log(step, **numbers)` records
    metrics and `loop.save_state`/`loop.resume_state` make a killed training resume. Rewinding
    (`lottery.rewind="2048it"`, counted in the steps your loop reports) needs it: the dense training must report
    step k, whose weights lth keeps as θ_k, and every level then starts from θ_k at `loop.start_step` = k.
    """
    import torch

    from lth.executors import LocalExecutor
    from lth.experiments.base import warn_if_threads_changed
    from lth.prune import check_criterion
    from lth.store import RunStore
    from lth.validate import preflight

    lottery = lottery or LotteryConfig()
    if not callable(model_fn) or not callable(train_fn):
        raise ConfigError("find_tickets(model_fn, train_fn): both must be callables (a model factory and your "
                          "training function)")
    cfg = ImpConfig(prune=prune or PruneConfig(), lottery=lottery, seed=seed, preset=name, out_dir=out_dir,
                    checkpoint_seconds=checkpoint_seconds)
    build = seeded_builder(model_fn)
    cfg = replace(cfg, model=replace(cfg.model, name=f"custom:{name}:{_fingerprint(_checked_model(build(seed)))}"))
    preflight(cfg, data=False)
    # Your loop holds the data: criteria that score on training batches (snip, grasp) or feed the model an
    # input of a known shape (synflow) cannot run here.
    check_criterion(cfg.prune.criterion, PROVIDES - {"batches", "input_shape"}, strategy=cfg.prune.strategy,
                    where="find_tickets (your own model and training loop)")
    loop_rewind_step(cfg.lottery, train_fn)
    store = RunStore.for_config(cfg, log=log)
    with store:
        warn_if_threads_changed(store)
        run_tickets(cfg, store, build, train_fn, LocalExecutor(device=torch.device("cpu")), log)
    return store


def run_tickets(cfg: ImpConfig, store, build: Callable[[int], Any], train_fn: Callable[..., Any], executor,
                log: Callable[[str], None] = print) -> None:
    """find_tickets' work in a run folder that is already open: IMP whose trainings are `train_fn` on networks
    from `build(seed)`. Experiments built on a foreign training loop (`lth rl`) run through it too."""
    Imp(cfg, store, build, loop_rewind_step(cfg.lottery, train_fn), train_fn=train_fn).run(executor, log)


def seeded_builder(model_fn: Callable[..., Any]) -> Callable[[int], Any]:
    """build(seed) from a user's model factory: model_fn(seed), or model_fn() under torch's RNG seeded (and
    restored after)."""
    import inspect

    takes_seed = len(inspect.signature(model_fn).parameters) > 0

    def build(s: int):
        import torch

        if takes_seed:
            return model_fn(s)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s)
            return model_fn()

    return build


def _checked_model(model):
    import torch

    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"model_fn must return an nn.Module, got {type(model).__name__}")
    return model


def loop_rewind_step(lottery: LotteryConfig, train_fn: Callable[..., Any]) -> int:
    """k for a foreign loop: counted in the steps the loop reports, so only `Nit`; rewinding needs the Loop
    argument (the dense training reports step k through it)."""
    from lth.config import parse_steps
    from lth.executors.function import takes_loop

    k, unit = parse_steps(lottery.rewind, "--lottery.rewind")
    if k == 0:
        return 0
    if unit != "it":
        raise ConfigError(f"--lottery.rewind {lottery.rewind}: with your own training loop lth knows no epochs; give "
                          f"the rewind step in the steps your loop reports, e.g. {k}it")
    if not takes_loop(train_fn):
        raise ConfigError(f"--lottery.rewind {lottery.rewind}: rewinding needs train_fn(model, mask, loop), whose "
                          f"dense training calls loop.reached(step) so that lth can keep θ_{k}; add the third "
                          "parameter, or reset to θ_0 with rewind 0it")
    return k
