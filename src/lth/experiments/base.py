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
    default_preset: str = ""
    """The preset its CLI command starts from when no --preset is given (empty: the CLI's default)."""


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

    Everything that can be checked is checked before a run folder is made or anything trains; finished
    trainings in the run folder are skipped."""
    from lth.executors import LocalExecutor
    from lth.store import RunStore
    from lth.train import resolve_device
    from lth.validate import preflight

    experiment = experiment_of(cfg)
    preflight(cfg)
    device = resolve_device(cfg.device)
    if data is None:
        from lth.data import load

        data = load(cfg.data, device=device)  # a missing or corrupt dataset fails before a run folder is made
    if experiment.check is not None:
        experiment.check(cfg, data)
    store = RunStore.for_config(cfg, log=log)
    if executor is None:
        executor = LocalExecutor(device=device, compute=cfg.compute, progress=progress,
                                 datasets={cfg.data: data})
    with store:
        experiment.run(cfg, executor, store, log)
    return store


def draw_init(store, build: Callable[[int], Any], seed: int, replicate: int) -> None:
    """θ_0 of a replicate: `build(seed)`'s weights, drawn once and kept in the run folder."""
    from lth.fileio import save_weights

    path = store.init_path(replicate)
    if not path.exists():
        save_weights(build(seed), path)


def init_state(store, replicate: int) -> dict:
    """θ_0 of a replicate, read back from the run folder."""
    from lth.fileio import load_weights

    return load_weights(store.init_path(replicate),
                        fix="It is θ_0 of the replicate: without it the run cannot continue; delete the "
                            f"folder {store.rep_dir(replicate)} to start that replicate over.")


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
