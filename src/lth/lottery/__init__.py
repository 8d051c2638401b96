"""Lottery-ticket experiments: IMP levels, rewinding, one-shot pruning, controls and replicates."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from lth.config import ExperimentConfig, LotteryConfig, PruneConfig
from lth.lottery.backends import DatasetBackend, FunctionBackend
from lth.lottery.imp import IMP, Backend, Job
from lth.lottery.results import aggregate, format_table
from lth.prune import Mask
from lth.store import RunStore

__all__ = ["IMP", "Backend", "DatasetBackend", "FunctionBackend", "Job", "aggregate", "find_tickets",
           "format_table", "run_imp"]


def run_imp(cfg: ExperimentConfig, *, data=None, progress: bool | None = None,
            log: Callable[[str], None] = print) -> RunStore:
    """Run (or resume) the IMP experiment `cfg` on its registered model and dataset; returns its run store.

    Everything is checked before training starts; finished trainings in the run folder are skipped.
    """
    from lth.data import load
    from lth.train import resolve_device
    from lth.validate import check_experiment

    check_experiment(cfg)
    device = resolve_device(cfg.device)
    # Data first: a missing or corrupt dataset fails before a run folder is made.
    data = data if data is not None else load(cfg.data, device=device)
    backend = DatasetBackend(cfg, data, device, progress)  # checks the rewind step against the budget
    store = RunStore.for_config(cfg)
    with store:
        IMP(cfg, backend, store, log).run()
    return store


def find_tickets(model_fn: Callable[..., nn.Module], train_fn: Callable[[nn.Module, Mask], dict[str, Any]], *,
                 name: str = "custom", prune: PruneConfig | None = None, lottery: LotteryConfig | None = None,
                 seed: int = 0, out_dir: str = "runs", log: Callable[[str], None] = print) -> RunStore:
    """IMP on your own network and training loop.

    `model_fn()` builds the network (seeded by lth; or `model_fn(seed)`), `train_fn(model, mask)` trains it
    in place with your loop and returns numbers such as {"test_acc": 0.97}. lth prunes by magnitude,
    resets the survivors to θ_0, trains the controls, and stores everything under `out_dir` like `lth run`.
    `name` names the run folder: give each different model its own name.
    """
    from dataclasses import replace

    from lth.lottery.imp import check_lottery

    lottery = lottery or LotteryConfig()
    if lottery.rewind not in ("0it", "0ep"):
        raise ValueError("find_tickets resets to θ_0 only (rewind 0it): it cannot stop inside your training "
                         "function to save θ_k; use run_imp with a registered model for rewinding")
    cfg = replace(ExperimentConfig(), prune=prune or PruneConfig(), lottery=lottery, seed=seed,
                  preset=name, out_dir=out_dir)
    cfg = replace(cfg, model=replace(cfg.model, name=f"custom:{name}"))
    check_lottery(cfg)
    store = RunStore.for_config(cfg)
    with store:
        IMP(cfg, FunctionBackend(model_fn, train_fn), store, log).run()
    return store
