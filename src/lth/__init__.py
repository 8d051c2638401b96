"""lth: find lottery tickets in neural networks, test them against controls, and report them.

The main entry points::

    lth.run_imp(cfg)                      IMP with controls and replicates on a registered model and dataset
    lth.find_tickets(model_fn, train_fn)  IMP on your own model and training loop
    lth.launch(cfg)                       any registered experiment (its config class says which)
    lth.train(model, data, train_cfg)     the training loop
    lth.presets.get(name)                 the papers' experiments as configs; lth.override(cfg, {...})

Names are imported on first use, so `import lth` (and `lth --help`) does not import torch.
"""

from __future__ import annotations

import importlib
import os

# OpenMP threads that wait for work spin by default (libgomp: 300,000 rounds, a few ms), on cores another
# process needs: two trainings sharing a 2-core machine then ran about 8x slower than alone (issue 15).
# Not spinning at all (OMP_WAIT_POLICY=PASSIVE) cost a training alone 1.6x on a 2-core VM, where a sleeping
# thread is slow to wake. A short spin keeps most of the solo speed and still meets the shared-machine
# targets (benchmarks/concurrency.py). libgomp reads this when torch loads, hence here, before any torch
# import of lth's; an explicit OMP_WAIT_POLICY or GOMP_SPINCOUNT (or torch imported before lth) wins.
SPIN_COUNT = "3000"
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", SPIN_COUNT)

__version__ = "0.2.0"

_LAZY = {
    "ExperimentConfig": "lth.config", "ImpConfig": "lth.config", "RunConfig": "lth.config", "override": "lth.config",
    "UserError": "lth.errors",
    "presets": None, "train": None,  # subpackages/modules
    "Mask": "lth.prune", "criterion": "lth.prune",
    "run_imp": "lth.experiments", "find_tickets": "lth.experiments", "launch": "lth.experiments",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'lth' has no attribute {name!r}")
    module = _LAZY[name]
    value = importlib.import_module(f"lth.{name}") if module is None else getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
