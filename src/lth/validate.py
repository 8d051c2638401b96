"""The preflight: everything that can be checked before any work starts, run once by `launch`. Bad input is
refused with a message that names the fix, instead of failing an hour into a run.

It checks each config section (its own `check`), the names that registries know (model, dataset,
initializer, pruning criterion), the device and the data files. What needs the loaded data or the built
model (the rewind step against the budget, the pruning plan) is the experiment's own `check`.
"""

from __future__ import annotations

from lth.config import RunConfig
from lth.errors import ConfigError


def preflight(cfg: RunConfig, *, data: bool = True) -> None:
    """Every check that needs neither the data loaded nor a model built; `data=False` for a user's own model
    and loop (find_tickets), which has no registered model or dataset."""
    cfg.check()
    if "tensorboard" in getattr(cfg, "log", ()):
        from lth.tracking import require_tensorboard

        require_tensorboard()
    prune = getattr(cfg, "prune", None)
    if prune is not None:
        from lth.prune import get_criterion

        get_criterion(prune.criterion)
    if not data:
        return
    from lth.data import DATASETS, check_available
    from lth.models import INITIALIZERS, MODELS
    from lth.train import resolve_device

    if cfg.model.name not in MODELS:
        raise ConfigError(f"unknown model {cfg.model.name!r}; known: {', '.join(MODELS)}")
    if cfg.data.dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {cfg.data.dataset!r}; known: {', '.join(DATASETS)}")
    if cfg.model.init not in INITIALIZERS:
        raise ConfigError(f"unknown initializer {cfg.model.init!r}; known: {', '.join(INITIALIZERS)}")
    if cfg.executor.kind == "ray":  # the device is the workers': checked there
        from lth.executors.ray import require_ray

        require_ray(local=not cfg.executor.address)
    else:
        resolve_device(cfg.device)
    check_available(cfg.data.dataset, cfg.data.data_dir, cfg.data.download)
