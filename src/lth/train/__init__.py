"""The training loop, its steppers, optimizers and schedules, evaluation, and checkpoints at named steps.

The package is also callable: `lth.train(model, data, cfg)` is `lth.train.train(model, data, cfg)`. Binding
the function itself to `lth.train` would hide this package behind it (`lth.train.Hooks` and
`import lth.train.vmap as tv` would fail).
"""

import sys
import types

from lth.train.checkpoint import load_weights, save_weights
from lth.train.loop import (
    Hooks,
    Member,
    TrainResult,
    resolve_device,
    run_loop,
    train,
    train_batched,
)
from lth.train.metrics import METRIC_FIELDS, evaluate, summarize
from lth.train.steps import check_steps, to_iterations

__all__ = ["METRIC_FIELDS", "Hooks", "Member", "TrainResult", "check_steps", "evaluate", "load_weights",
           "resolve_device", "run_loop", "save_weights", "summarize", "to_iterations", "train", "train_batched"]


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
