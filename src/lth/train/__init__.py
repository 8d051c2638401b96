"""The training loop, optimizers and schedules, evaluation, and checkpoints at named steps."""

from lth.train.checkpoint import load_weights, save_weights
from lth.train.batched import Member, train_batched
from lth.train.loop import METRIC_FIELDS, Hooks, TrainResult, evaluate, resolve_device, train
from lth.train.steps import check_steps, to_iterations

__all__ = ["METRIC_FIELDS", "Hooks", "Member", "TrainResult", "check_steps", "evaluate", "load_weights",
           "resolve_device", "save_weights", "to_iterations", "train", "train_batched"]
