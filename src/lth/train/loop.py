"""The training loop: one lifecycle for every way of training.

`run_loop(stepper, members, data)` owns, once: the budget, the learning-rate schedule, each member's data
order, the evaluation cadence, resume, checkpoints, save_at hooks, progress and the summary. What differs
between the module, the hand-written chain and K networks under vmap is the stepper (lth.train.stepper).

The data is resident on the device and a batch is one index lookup; loss and accuracy accumulate on the
device and reach the host only at evaluation points (no `.item()` per step). Training always runs the whole
budget; the early-stop iteration (minimum validation loss) is read off the evaluations afterwards.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lth.config import ComputeConfig, TrainConfig, check_types
from lth.errors import ConfigError
from lth.seeds import seed_for
from lth.train.checkpoint import (
    DamagedState,
    load_state,
    save_state,
    set_aside,
    warn_if_settings_differ,
)
from lth.train.metrics import METRIC_FIELDS, summarize
from lth.train.optim import lr_factor
from lth.train.steps import to_iterations


def resolve_budget(cfg: TrainConfig, steps_per_epoch: int, start_step: int = 0) -> tuple[int, int]:
    """(total iterations, evaluation interval) of `cfg`; refuses a start step outside the budget."""
    total = to_iterations(cfg.budget, steps_per_epoch, "--train.budget")
    eval_every = to_iterations(cfg.eval_every, steps_per_epoch, "--train.eval_every")
    if eval_every < 1:
        raise ConfigError(f"--train.eval_every {cfg.eval_every} is less than one iteration")
    if not 0 <= start_step <= total:
        raise ConfigError(f"start step {start_step} is outside the training budget of {total} iterations")
    return total, eval_every


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"--device {device!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but CUDA is not available here; use --device cpu or auto")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {str(device)!r} is not supported; use auto, cpu, cuda or cuda:N")
    return device


def check_train_config(cfg: TrainConfig) -> None:
    """The checks `lth run` makes, for a TrainConfig built in Python and handed to `train` directly."""
    check_types(cfg, "train.")
    cfg.check()


@dataclass
class TrainResult:
    metrics: list[dict[str, float | None]]  # one row per evaluation (METRIC_FIELDS); None: not measured
    summary: dict[str, Any]
    seconds: float = 0.0


@dataclass
class Hooks:
    """Ways to look at training from outside without touching the loop."""

    save_at: dict[int, Callable[[int, nn.Module], None]] = field(default_factory=dict)
    """step -> callback(step, model) called when `step` iterations are done (0 = before the first)."""
    resume_path: Path | None = None
    """Where to keep resumable state; training resumes from it if present."""
    checkpoint_seconds: float = 60.0
    """Write resumable state at an evaluation point once this much wall time passed since the last."""


@dataclass
class Member:
    """One network of a training: the module (holds the start weights; gets the final ones), its train
    config (members of one pass share it, except data_seed), mask and hooks."""

    model: nn.Module
    cfg: TrainConfig
    mask: Any = None
    hooks: Hooks | None = None


def initial_rng_state(cfg: TrainConfig) -> torch.Tensor:
    """The global RNG state a training starts under (dropout draws from it): seeded from its data seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed_for("dropout", cfg.data_seed))
        return torch.get_rng_state()


def read_resume_state(path: Path | None) -> dict | None:
    """The resumable state at `path`, or None when there is none. A damaged one (truncated, emptied) is moved
    aside with a warning and its training restarts: nothing is lost but time."""
    if path is None or not Path(path).exists():
        return None
    try:
        return load_state(path)
    except DamagedState as e:
        aside = set_aside(Path(path))
        warnings.warn(f"{e}; moved it to {aside.name} and restarting that training from its start", stacklevel=2)
        return None


def _load_states(hooks: list[Hooks], device: torch.device, compute: ComputeConfig,
                 world_size: int = 1) -> list[dict] | None:
    states = [read_resume_state(h.resume_path) for h in hooks]
    if all(s is None for s in states):
        return None
    if any(s is None for s in states) or len({s["step"] for s in states}) > 1:
        raise ValueError("networks trained together must all resume from the same step, or all start fresh")
    warn_if_settings_differ(states[0], hooks[0].resume_path, device, compute, world_size)
    return states


def run_loop(stepper, members: list[Member], data, *, start_step: int = 0, augment: bool = False,
             progress: bool | None = None, desc: str = "",
             compute: ComputeConfig = ComputeConfig()) -> list[TrainResult]:
    """Train every member with `stepper` for its cfg.budget iterations from `start_step` (or from its
    resumable state). Returns one TrainResult per member, in order; `seconds` is the wall time shared
    equally. Each member's model is left in its final state."""
    from lth.data import Batches

    k = stepper.size
    cfg, device = members[0].cfg, stepper.device
    hooks = [m.hooks or Hooks() for m in members]
    train_split, val, test = data.train.to(device), data.val.to(device), data.test.to(device)
    batches = [Batches(train_split, cfg.batch_size, seed=m.cfg.data_seed, augment=augment) for m in members]
    spe = batches[0].steps_per_epoch
    total, eval_every = resolve_budget(cfg, spe, start_step)
    factor = lr_factor(cfg, spe, total)
    per_batch = cfg.batch_size * max(1, train_split.y[0].numel())  # targets per batch (tokens for sequences)

    states = _load_states(hooks, device, compute, getattr(stepper, "world_size", 1))
    if hasattr(stepper, "agree"):  # data-parallel (lth.train.ddp): every rank resumes from rank 0's state
        states = stepper.agree(states)
    metrics: list[list[dict[str, Any]]] = [[] for _ in members]
    step = start_step
    if states is not None:
        stepper.load(states)
        metrics, step = [s["metrics"] for s in states], states[0]["step"]
    # Members trained together draw no random numbers (VmapStepper refuses dropout), so each one's state
    # keeps the RNG state it started with and resumes alone as well as batched.
    initial_rng = [s["rng"] for s in states] if states is not None else [initial_rng_state(m.cfg) for m in members]

    shape = (k,) if stepper.batched else ()
    run_loss, run_correct, run_n = torch.zeros(shape, device=device), torch.zeros(shape, device=device), 0

    def record(at: int) -> None:
        nonlocal run_loss, run_correct, run_n
        vl, va = stepper.evaluate(val.x, val.y)
        tl, ta = stepper.evaluate(test.x, test.y)
        row = torch.stack([run_loss / max(1, run_n), run_correct / max(1, run_n * per_batch), vl, va, tl, ta], dim=-1)
        for j, values in enumerate(row.reshape(k, -1).tolist()):  # the one host sync per evaluation
            if run_n == 0:  # no training step since the last evaluation (step 0): no training numbers
                values[0] = values[1] = None
            metrics[j].append(dict(zip(METRIC_FIELDS, [at, *values])))
        run_loss, run_correct, run_n = torch.zeros_like(run_loss), torch.zeros_like(run_correct), 0

    def call_save_at(at: int) -> None:
        if any(at in h.save_at for h in hooks):
            stepper.sync()
            for h, m in zip(hooks, members):
                if at in h.save_at:
                    h.save_at[at](at, m.model)

    def checkpoint(at: int) -> None:
        saving = [j for j, h in enumerate(hooks) if h.resume_path is not None]
        exported = stepper.export()
        for j in saving:
            single = not stepper.batched
            save_state({"step": at, **exported[j], "metrics": metrics[j],
                        "rng": torch.get_rng_state() if single else initial_rng[j],
                        "cuda_rng": torch.cuda.get_rng_state(device) if single and device.type == "cuda" else None,
                        "compute": dataclasses.asdict(compute)}, hooks[j].resume_path)

    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=step, desc=desc or ("train" if k == 1 else f"train x{k}"),
               disable=not progress if progress is not None else None, leave=False, unit="it", dynamic_ncols=True)
    saving_seconds = [h.checkpoint_seconds for h in hooks if h.resume_path is not None]
    checkpoint_seconds = min(saving_seconds) if saving_seconds else None
    t0 = last_save = time.perf_counter()
    # Dropout and other stochastic layers draw from torch's global generator; fork it so that training is
    # reproducible from its own seed (and its saved state) without disturbing the caller's RNG.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.set_rng_state(initial_rng[0])
        if states is not None and device.type == "cuda" and states[0].get("cuda_rng") is not None:
            torch.cuda.set_rng_state(states[0]["cuda_rng"], device)
        elif states is None and device.type == "cuda":
            torch.cuda.manual_seed(seed_for("dropout", cfg.data_seed))
        if states is None:
            stepper.start()
            call_save_at(step)
            record(step)
        while step < total:
            loss, correct = stepper.step([b.get(step) for b in batches], cfg.lr * factor(step), step)
            run_loss += loss
            run_correct += correct
            run_n += 1
            step += 1
            call_save_at(step)
            if step % eval_every == 0 or step == total:
                record(step)
                bar.update(step - bar.n)
                now = time.perf_counter()
                if checkpoint_seconds is not None and step < total and now - last_save >= checkpoint_seconds:
                    checkpoint(step)
                    last_save = now
        bar.close()
        final_loss, final_acc = stepper.evaluate(train_split.x, train_split.y)
        finals = torch.stack([final_loss, final_acc], dim=-1).reshape(k, 2).tolist()
    stepper.sync()
    seconds = (time.perf_counter() - t0) / k
    return [TrainResult(metrics[j], summarize(metrics[j], tuple(finals[j]), getattr(data, "task", "classify")),
                        seconds) for j in range(k)]


def train(model: nn.Module, data, cfg: TrainConfig, *, mask=None, start_step: int = 0,
          hooks: Hooks | None = None, device: str | torch.device | None = None,
          augment: bool = False, progress: bool | None = None, desc: str = "",
          compute: ComputeConfig = ComputeConfig()) -> TrainResult:
    """Train `model` on `data` (an lth.data.Dataset) for cfg.budget iterations, from `start_step`.

    `augment` turns on random crops and flips (CIFAR). With `mask`, pruned weights are zeroed before the
    first step and after every step. Returns the evaluation rows and a summary. The model is left in its
    final state.
    """
    from lth.train.module import single_stepper

    check_train_config(cfg)
    device = resolve_device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    stepper = single_stepper(model, cfg, mask, device=device, compute=compute)
    member = Member(model, cfg, mask, hooks)
    return run_loop(stepper, [member], data, start_step=start_step, augment=augment, progress=progress,
                    desc=desc, compute=compute)[0]


def train_batched(members: list[Member], data, *, start_step: int = 0, device: str | torch.device | None = None,
                  augment: bool = False, progress: bool | None = None, desc: str = "",
                  compute: ComputeConfig = ComputeConfig()) -> list[TrainResult]:
    """Train every member's network in one batched pass (lth.train.vmap).

    Members must share architecture and train config except data_seed, be batchable (`why_not_batchable`),
    and either all have resumable state at the same step or none."""
    from lth.train.vmap import VmapStepper, config_key

    if not members:
        return []
    for m in members:
        check_train_config(m.cfg)
    if any(config_key(m.cfg) != config_key(members[0].cfg) for m in members):
        raise ValueError("batched networks must share their train config (all but data_seed)")
    device = resolve_device(device) if device is not None else next(members[0].model.parameters()).device
    for m in members:
        m.model.to(device)
    stepper = VmapStepper([m.model for m in members], members[0].cfg, [m.mask for m in members], device=device,
                          compute=compute)
    return run_loop(stepper, members, data, start_step=start_step, augment=augment, progress=progress,
                    desc=desc, compute=compute)
