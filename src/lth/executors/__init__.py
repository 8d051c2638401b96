"""Who runs an experiment's work: the experiment describes it as tasks (plain calls and trainings, each
taking the results it depends on), an executor runs them and returns their results.

- `LocalExecutor` (local.py): this process; trainings that become ready together are trained one at a time
  or K at once in a batched pass (`--compute.batch`).
- `RayExecutor` (ray.py): Ray tasks on a local Ray instance or a cluster (`--executor ray`); everything that
  is ready runs in parallel.
- `DistributedExecutor` (distributed.py): under torchrun, rank 0 runs the experiment and every training is
  trained data-parallel by all ranks.
A cluster executor implements the same methods (`submit`, `train`, `gather`, `dataset`).

Names are imported on first use: a Ray worker that only counts progress (ray.py's tally) imports no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"Executor": "base", "Handle": "base", "JobResult": "base", "TrainJob": "base", "LocalExecutor": "local",
         "RayExecutor": "ray", "DistributedExecutor": "distributed"}

__all__ = sorted(_LAZY) + ["make_executor"]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'lth.executors' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"lth.executors.{_LAZY[name]}"), name)
    globals()[name] = value
    return value


def make_executor(cfg, *, device, progress: bool | None = None, data: Any = None):
    """The executor `cfg` asks for: data-parallel when this process is one rank of several (torchrun), Ray
    tasks with `--executor ray`, else this process. `data`: the dataset already loaded for `cfg.data`."""
    from lth.executors import distributed

    datasets = {cfg.data: data} if data is not None else {}
    kind = getattr(getattr(cfg, "executor", None), "kind", "local")  # lth rl's config has no executor section
    if distributed.world_size() > 1:
        if kind != "local":
            from lth.errors import ConfigError

            raise ConfigError("--executor ray cannot run under torchrun: torchrun makes each training "
                              "data-parallel, Ray runs trainings side by side; use one or the other")
        return distributed.DistributedExecutor(device=device, compute=cfg.compute, progress=progress,
                                               datasets=datasets)
    if kind == "ray":
        from lth.executors.ray import RayExecutor

        return RayExecutor(cfg.executor, compute=cfg.compute, device=cfg.device, progress=progress,
                           datasets=datasets)
    from lth.executors.local import LocalExecutor

    return LocalExecutor(device=device, compute=cfg.compute, progress=progress, datasets=datasets)
