"""The executor interface and the description of a training as data.

An experiment builds a graph: `submit(fn, *args)` is a call whose arguments may be handles of earlier tasks
(the call receives their results), `train(job)` trains a `TrainJob` (or the handle of a call that returns
one; None means nothing to train), and `gather(handles)` waits for results. Nothing calls back into the
experiment: a task's result is an argument of the tasks that need it. So an executor may run everything
that is ready in parallel (a cluster) or in this process in dependency order (LocalExecutor).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from lth.config import DataConfig, TrainConfig


@dataclass
class TrainJob:
    """One training, as data: what to build, where it starts, how it trains, where its state lives."""

    key: str
    """Where it sits in its run (`rep0/level03/ticket`): progress labels and messages."""
    build: Callable[[], Any]
    """Makes the network (its architecture; the starting weights come from `start`)."""
    train: TrainConfig
    start: dict[str, Any] | None = None
    """Starting weights (a state dict); None: as built."""
    mask: Any = None
    data: DataConfig | None = None
    """The dataset to train on (None for a `train_fn` job)."""
    augment: bool = False
    start_step: int = 0
    save_at: dict[int, Path] = field(default_factory=dict)
    """step -> file that receives the network's weights when `step` iterations are done."""
    resume_path: Path | None = None
    checkpoint_seconds: float = 30.0
    train_fn: Callable[..., Any] | None = None
    """A user's own training loop, train_fn(model, mask[, loop]) -> dict of numbers, instead of lth's
    (lth.executors.function: `loop` is its Loop; `start_step`, `save_at` and `resume_path` reach it there)."""
    stepper: Callable[..., Any] | None = None
    """stepper(model, train_cfg, mask, device=, compute=) -> a Stepper (lth.train.stepper) for jobs that train
    differently (a learned mask, gradual pruning); None: the executor picks the chain, module or vmap stepper.
    A job with its own stepper is trained alone."""


@dataclass
class JobResult:
    metrics: list[dict[str, Any]]
    summary: dict[str, Any]
    seconds: float
    final: dict[str, Any]
    """The network's final weights (state dict)."""


class Handle:
    """A task of the graph and, once run, its result."""

    __slots__ = ("kind", "fn", "args", "done", "value")

    def __init__(self, kind: str, fn: Callable[..., Any] | None, args: tuple):
        self.kind, self.fn, self.args = kind, fn, args
        self.done, self.value = False, None

    def deps(self) -> list["Handle"]:
        return [a for a in self.args if isinstance(a, Handle)]


class Executor(Protocol):
    def submit(self, fn: Callable[..., Any], *args: Any) -> Handle: ...

    def train(self, job: "TrainJob | Handle | None") -> Handle: ...

    def gather(self, handles: list[Handle]) -> list[Any]: ...

    def dataset(self, cfg: DataConfig) -> Any:
        """The dataset its trainings use for `cfg` (experiments read shapes and sizes from it)."""
        ...


_DATASETS: dict[tuple[Any, str], Any] = {}


def process_dataset(cfg: DataConfig, device: Any = "cpu") -> Any:
    """`cfg`'s dataset, loaded once per process: the tasks a worker process runs one after another (Ray)
    share it instead of reloading it, and none of it travels with a task."""
    key = (cfg, str(device))
    if key not in _DATASETS:
        from lth.data import load

        _DATASETS[key] = load(cfg, device=device)
    return _DATASETS[key]

