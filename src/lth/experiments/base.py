"""The experiment seat: what an experiment is, the registry, and `launch`, which runs any of them.

An experiment is a name, a config class (a `RunConfig` subclass with its own sections), a
`run(cfg, executor, store, log)` that describes its work to the executor and records the results in the
store, and the report sections that show it. `launch` does what every experiment needs around that: the
preflight, the data, the run folder and its lock, and the executor.

Experiment modules import torch-heavy layers inside their functions: the CLI imports every registered
experiment to build its subcommands, and `lth --help` must not pay for torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lth.config import RunConfig


@dataclass(frozen=True)
class Experiment:
    name: str
    """Stored in config.json and hashed: never rename one."""
    config: type[RunConfig]
    run: Callable[..., Any]
    """run(cfg, executor, store, log) -> None: submit the work, gather it, record it, print as it goes."""
    help: str
    commands: tuple[str, ...] = ()
    """CLI subcommands (default: the name)."""
    positional: tuple[str, ...] = ()
    """Config fields the CLI also takes as leading bare arguments (`lth instability RUN` = `--source RUN`)."""
    check: Callable[[Any, Any], None] | None = None
    """check(cfg, data): refusals that need the dataset or the model, before the run folder is made."""
    report_sections: tuple[str, ...] = ("results", "curves", "masks")
    """Sections of lth.report that show this experiment (by name)."""
    show: Callable[[Any], str] | None = None
    """What `lth show` and the end of a run print, from the run's store."""
    branches: Callable[[dict, int], list[str]] | None = None
    """branches(config dict, level): the trainings a level should have, so the report can name what is
    missing from an unfinished run."""
    resolve: Callable[[Any], Any] | None = None
    """resolve(cfg) -> cfg: fill in what the config takes from elsewhere (e.g. the settings of the source run
    it builds on) before anything is checked, printed or hashed; refuses a source it cannot use."""
    needs_data: bool = True
    """Whether `launch` loads the config's dataset (an agent that makes its own data, `lth rl`, does not)."""
    default_preset: str | None = None
    """The preset the CLI starts from without --preset (None: the CLI's default, mnist1d_mlp)."""


class ShipsWithoutData:
    """For an experiment's step object whose bound methods an executor ships to worker processes (Ray): the
    dataset does not travel with each step (a worker loads it once, `process_dataset`), nor do the masks
    cached in this process. A subclass sets `cfg`, `_data` and `_has_data` (False: the experiment has no
    dataset)."""

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_data": None, "_masks": {}}

    @property
    def data(self):
        if self._data is None and self._has_data:
            from lth.executors.base import process_dataset

            self._data = process_dataset(self.cfg.data)
        return self._data


EXPERIMENTS: dict[str, Experiment] = {}


def register(experiment: Experiment) -> Experiment:
    if experiment.name in EXPERIMENTS and EXPERIMENTS[experiment.name] != experiment:
        raise ValueError(f"an experiment named {experiment.name!r} is already registered")
    if getattr(experiment.config, "experiment", None) != experiment.name:
        raise ValueError(f"{experiment.config.__name__}.experiment must be {experiment.name!r}")
    EXPERIMENTS[experiment.name] = experiment
    return experiment


def experiment_of(cfg: Any) -> Experiment:
    name = getattr(type(cfg), "experiment", None)
    if name not in EXPERIMENTS:
        raise ValueError(f"{type(cfg).__name__} is not the config of a registered experiment")
    return EXPERIMENTS[name]


def launch(cfg: RunConfig, *, data=None, progress: bool | None = None, log: Callable[[str], None] = print,
           executor=None):
    """Run (or resume) the experiment of `cfg`; returns its RunStore.

    Everything that can be checked is checked before a run folder is made or anything trains (a Ray cluster
    that does not answer included); finished trainings in the run folder are skipped. `executor`: one to
    share between runs (a sweep's); by default the one `cfg.executor` asks for, closed at the end."""
    import torch

    from lth.executors import make_executor
    from lth.executors.distributed import rank_device
    from lth.store import RunStore
    from lth.train import resolve_device
    from lth.validate import preflight

    experiment = experiment_of(cfg)
    if experiment.resolve is not None:
        cfg = experiment.resolve(cfg)
    preflight(cfg, data=experiment.needs_data)
    # With Ray the trainings pick their device on their workers; here the data only gives shapes and sizes.
    remote = executor_kind(cfg) == "ray"
    device = torch.device("cpu") if remote else rank_device(resolve_device(cfg.device))
    if data is None and experiment.needs_data:
        from lth.data import load

        data = load(cfg.data, device=device)  # a missing or corrupt dataset fails before a run folder is made
    if experiment.check is not None:
        experiment.check(cfg, data)
    own = executor is None
    if own:
        executor = make_executor(cfg, device=device, progress=progress, data=data)
    try:
        store = RunStore.for_config(cfg, log=log)
        with store:
            if not remote and device.type == "cpu":  # trainings in this process: its thread count matters
                warn_if_threads_changed(store)
            experiment.run(cfg, executor, store, log)
    finally:
        if own and hasattr(executor, "close"):
            executor.close()
    return store


def executor_kind(cfg) -> str:
    """`--executor` of a config (local where an experiment's config has no executor section, e.g. lth rl)."""
    return getattr(getattr(cfg, "executor", None), "kind", "local")


def warn_if_threads_changed(store) -> None:
    """Warn when this process would continue a run's CPU trainings with another thread count than the earlier
    ones used (recorded in its config.json). The matrix kernels may split their sums differently for another
    count, and training amplifies a last-bit difference: the new trainings would not be those an
    uninterrupted run makes. A warning, not an error: the results are still valid."""
    import warnings

    import torch

    threads = torch.get_num_threads()
    recorded = store.note_threads(threads)
    if recorded is not None:
        warnings.warn(f"{store.root.name}: its trainings so far used {recorded} CPU threads, this process uses "
                      f"{threads}. New trainings may differ in the last bits from those of an uninterrupted run, "
                      f"and those differences grow; to continue it exactly, use --compute.threads {recorded}.",
                      stacklevel=2)


def draw_init(store, build: Callable[[int], Any], seed: int, replicate: int, place: dict | None = None) -> None:
    """θ_0 of a replicate: `build(seed)`'s weights, drawn once and kept in the run folder (recording `place`,
    where the file belongs, when given)."""
    from lth.fileio import save_weights

    path = store.init_path(replicate)
    if not path.exists():
        save_weights(build(seed), path, place)


def init_state(store, replicate: int, place: dict | None = None) -> dict:
    """θ_0 of a replicate, read back from the run folder (checked against `place` when given)."""
    from lth.fileio import load_weights

    return load_weights(store.init_path(replicate),
                        fix="It is θ_0 of the replicate: without it the run cannot continue; delete the "
                            f"folder {store.rep_dir(replicate)} to start that replicate over.", place=place)


def criterion_batches(data, batch_size: int, seed: int, replicate: int) -> Callable[[], Any]:
    """Training batches in a seeded order for the criteria that score on data (CriterionContext.batches):
    a fresh, endless iterator per call, the same for every criterion of a replicate."""
    from lth.seeds import seed_for

    def batches():
        from lth.data import Batches

        b = Batches(data.train, batch_size, seed=seed_for("criterion_batches", seed, replicate))
        step = 0
        while True:
            yield b.get(step)
            step += 1

    return batches
