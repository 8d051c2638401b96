"""The experiments registry: `imp` (`lth run`), `train` (`lth train`) and `rl` (`lth rl`) first; each experiment is one
module here plus its import line below. `launch(cfg)` runs any of them."""

# The built-in experiments: importing a module registers its experiment.
from lth.experiments import imp, prune_at_init, rl, supermask, train  # noqa: E402,F401
from lth.experiments.base import (
           EXPERIMENTS,
           Experiment,
           experiment_of,
           launch,
           register,
)
from lth.experiments.imp import find_tickets, run_imp  # noqa: E402
from lth.experiments.results import aggregate, format_table  # noqa: E402

__all__ = ["EXPERIMENTS", "Experiment", "aggregate", "experiment_of", "find_tickets", "format_table", "launch",
           "register", "run_imp"]

# Experiments that study IMP's tickets, registered after imp and train (which `lth --help` lists first).
from lth.experiments import early_bird, gradual, instability, transfer  # noqa: E402,F401
