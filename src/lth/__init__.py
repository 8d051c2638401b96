"""lth: find lottery tickets in neural networks, test them against controls, and report them.

The main entry points::

    lth.run_imp(cfg)                      IMP with controls and replicates on a registered model and dataset
    lth.find_tickets(model_fn, train_fn)  IMP on your own model and training loop
    lth.train(model, data, train_cfg)     the training loop
    lth.presets.get(name)                 the papers' experiments as configs; lth.override(cfg, {...})
"""

__version__ = "0.1.0"

from lth import presets
from lth.config import ExperimentConfig, override
from lth.lottery import find_tickets, run_imp
from lth.prune import Mask
import lth.train as train  # the package, callable as the training loop (see lth.train)

__all__ = ["ExperimentConfig", "Mask", "find_tickets", "override", "presets", "run_imp", "train"]
