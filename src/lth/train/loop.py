"""The training loop.

Kept as plain as nanoGPT's: the data is resident on the device and a batch is one index_select; the mask
is one fused in-place multiply after each optimizer step; loss and accuracy accumulate on the device and
reach the host only at evaluation points (no `.item()` per step). Training always runs the whole budget;
the early-stop iteration (minimum validation loss) is read off the evaluations afterwards.

Where the time goes (LeNet-300-100, batch 60, CPU): the matrix products are most of a step
(benchmarks/kernels.py), so they run through oneDNN (lth.train.kernels), lth's MLPs' steps are written
out by hand without the autograd engine (lth.train.chain) and the optimizer is PyTorch's fused kernel
(lth.train.optim); evaluation uses large batches (EVAL_BATCH). torch.compile is
off unless LTH_COMPILE=1: on the CPU it did not pay (see `compile_requested`). Several networks of one
architecture can be trained in one pass with lth.train.batched.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lth.config import TrainConfig
from lth.train.chain import chain_for
from lth.train.checkpoint import load_state, save_state, warn_if_threads_differ
from lth.train.kernels import env_switch, fast_kernels
from lth.train.optim import fast_step, lr_factor, make_optimizer, set_lr
from lth.train.steps import to_iterations

METRIC_FIELDS = ("step", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")

EVAL_BATCH = 4096
"""Examples per forward pass when evaluating a whole split: a few large matrix products per split."""


def compile_requested() -> bool:
    """LTH_COMPILE=1 turns on torch.compile of the model's forward pass. Off by default: on the CPU a small
    network's step is mostly matrix products (benchmarks/kernels.py), which compiling does not speed up, and
    compiling costs time at the start of every training. `LTH_COMPILE=1 python benchmarks/throughput.py`
    measures it against eager mode."""
    return env_switch("LTH_COMPILE", False)


def stochastic_seed(cfg: TrainConfig) -> int:
    """Seed of the global RNG that dropout and other stochastic layers draw from during a training.

    Derived from the data seed; `train` and lth.train.batched both use it, so their checkpoints agree."""
    return int(torch.randint(0, 2**62, (1,), generator=torch.Generator().manual_seed(cfg.data_seed * 7919 + 17)))


def resolve_budget(cfg: TrainConfig, steps_per_epoch: int, start_step: int = 0) -> tuple[int, int]:
    """(total iterations, evaluation interval) of `cfg`; refuses a start step outside the budget."""
    total = to_iterations(cfg.budget, steps_per_epoch, "--train.budget")
    eval_every = max(1, to_iterations(cfg.eval_every, steps_per_epoch, "--train.eval_every"))
    if not 0 <= start_step <= total:
        raise ValueError(f"start step {start_step} is outside the training budget of {total} iterations")
    return total, eval_every


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but CUDA is not available here; use --device cpu or auto")
    return device


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


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = EVAL_BATCH,
             autocast: contextlib.AbstractContextManager | None = None,
             forward: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean loss, accuracy) over a whole split, as 0-d tensors on the device (no host sync).

    `forward` computes the model's function in its place (the trainer passes its lth.train.chain.Chain)."""
    forward = forward or model
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device)
    for i in range(0, len(x), batch_size):
        with autocast or contextlib.nullcontext():
            logits = forward(x[i:i + batch_size])
        loss_sum += F.cross_entropy(logits.float(), y[i:i + batch_size], reduction="sum")
        correct += (logits.argmax(1) == y[i:i + batch_size]).sum()
    model.train(was_training)
    n = max(1, len(x))
    return loss_sum / n, correct / n


def _masked_pairs(model: nn.Module, mask) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    if mask is None:
        return [], []
    mask.check_fits(model)
    params = dict(model.named_parameters())
    names = list(mask)
    # A tensor the mask keeps whole (the dense level, an unpruned layer) needs no multiply.
    names = [n for n in names if not bool(mask[n].all())]
    ps = [params[n] for n in names]
    ms = [mask[n].to(params[n].device, params[n].dtype) for n in names]
    return ps, ms


@torch.no_grad()
def _apply_mask(params: list[torch.Tensor], masks: list[torch.Tensor]) -> None:
    """One fused in-place multiply over every masked tensor."""
    if params:
        torch._foreach_mul_(params, masks)


def summarize(metrics: list[dict[str, float]], final_train: tuple[float, float]) -> dict[str, Any]:
    """Early stop (minimum validation loss; ties: the earlier step; a diverged NaN loss never wins) and
    end-of-training numbers."""
    best = min(metrics, key=lambda m: (math.isnan(m["val_loss"]), m["val_loss"], m["step"]))
    last = metrics[-1]
    return {
        "iterations": int(last["step"]),
        "early_stop_step": int(best["step"]),
        "early_stop_val_loss": best["val_loss"],
        "early_stop_val_acc": best["val_acc"],
        "early_stop_test_acc": best["test_acc"],
        "final_val_acc": last["val_acc"],
        "final_test_loss": last["test_loss"],
        "final_test_acc": last["test_acc"],
        "final_train_loss": final_train[0],
        "final_train_acc": final_train[1],
    }


def train(model: nn.Module, data, cfg: TrainConfig, *, mask=None, start_step: int = 0,
          hooks: Hooks | None = None, device: str | torch.device | None = None,
          augment: bool = False, progress: bool | None = None, desc: str = "") -> TrainResult:
    """Train `model` on `data` (an lth.data.Dataset) for cfg.budget iterations, from `start_step`.

    `augment` turns on random crops and flips (CIFAR). With `mask`, pruned weights are zeroed before the
    first step and after every step. Returns the evaluation rows and a summary. The model is left in its
    final state.
    """
    from lth.data import Batches

    hooks = hooks or Hooks()
    device = resolve_device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    train_split, val, test = data.train.to(device), data.val.to(device), data.test.to(device)
    batches = Batches(train_split, cfg.batch_size, seed=cfg.data_seed, augment=augment)
    spe = batches.steps_per_epoch
    total, eval_every = resolve_budget(cfg, spe, start_step)
    factor = lr_factor(cfg, spe, total)
    optimizer = make_optimizer(model.parameters(), cfg)
    masked, mask_values = _masked_pairs(model, mask)
    # The step: lth's MLPs on the CPU written out by hand, without the autograd engine (lth.train.chain);
    # anything else the module's forward (compiled if asked) and autograd.
    chain = None if compile_requested() else chain_for(model, device)
    forward = torch.compile(model) if compile_requested() else model
    params = [p for group in optimizer.param_groups for p in group["params"]]
    use_amp = cfg.amp and device.type == "cuda"
    # The context of every forward pass: bfloat16 autocast on CUDA with amp; on the CPU, nn.Linear through
    # oneDNN's AVX-512 kernels instead of MKL's (lth.train.kernels; measured in benchmarks/kernels.py).
    if use_amp:
        autocast = lambda: torch.autocast("cuda", dtype=torch.bfloat16)  # noqa: E731
    elif compile_requested():
        autocast = contextlib.nullcontext
    else:
        autocast = lambda: fast_kernels(device)  # noqa: E731
    # Evaluations: through the chain where there is one (it picks its own kernels), else as the step.
    eval_autocast = (lambda: None) if chain is not None else autocast

    metrics: list[dict[str, float]] = []
    step = start_step
    resumed = None
    if hooks.resume_path is not None and Path(hooks.resume_path).exists():
        resumed = load_state(hooks.resume_path)
        warn_if_threads_differ(resumed, hooks.resume_path, device)
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        metrics, step = resumed["metrics"], resumed["step"]
    optimizer_step = fast_step(optimizer)

    run_loss = torch.zeros((), device=device)
    run_correct = torch.zeros((), device=device)
    run_n = 0

    def record(at: int) -> None:
        nonlocal run_loss, run_correct, run_n
        vl, va = evaluate(model, val.x, val.y, autocast=eval_autocast(), forward=chain)
        tl, ta = evaluate(model, test.x, test.y, autocast=eval_autocast(), forward=chain)
        row = torch.stack([run_loss / max(1, run_n), run_correct / max(1, run_n * cfg.batch_size), vl, va, tl, ta])
        values = row.tolist()  # the one host sync per evaluation
        if run_n == 0:  # no training step since the last evaluation (step 0): no training numbers
            values[0] = values[1] = None
        metrics.append(dict(zip(METRIC_FIELDS, [at, *values])))
        run_loss, run_correct, run_n = torch.zeros_like(run_loss), torch.zeros_like(run_correct), 0

    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=step, desc=desc or "train", disable=not progress if progress is not None else None,
               leave=False, unit="it", dynamic_ncols=True)
    t0 = last_save = time.perf_counter()
    # Dropout and other stochastic layers draw from torch's global generator; fork it so that training is
    # reproducible from its own seed (and its saved state) without disturbing the caller's RNG.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        if resumed is not None:
            torch.set_rng_state(resumed["rng"])
            if device.type == "cuda" and resumed.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(resumed["cuda_rng"], device)
        else:
            torch.manual_seed(stochastic_seed(cfg))
            _apply_mask(masked, mask_values)
            if step in hooks.save_at:
                hooks.save_at[step](step, model)
            record(step)
        model.train()
        while step < total:
            x, y = batches.get(step)
            set_lr(optimizer, cfg.lr * factor(step))
            if chain is not None:
                loss, logits = chain.train_step(x, y)
            else:
                with autocast():
                    logits = forward(x)
                    loss = F.cross_entropy(logits.float(), y)
                for p in params:  # optimizer.zero_grad(set_to_none=True) without its per-call wrapper cost
                    p.grad = None
                loss.backward()
            optimizer_step()
            _apply_mask(masked, mask_values)
            run_loss += loss.detach()
            run_correct += (logits.argmax(1) == y).sum()
            run_n += 1
            step += 1
            if step in hooks.save_at:
                hooks.save_at[step](step, model)
            if step % eval_every == 0 or step == total:
                record(step)
                bar.update(step - bar.n)
                now = time.perf_counter()
                if hooks.resume_path is not None and step < total and now - last_save >= hooks.checkpoint_seconds:
                    save_state({"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                "metrics": metrics, "rng": torch.get_rng_state(),
                                "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None},
                               hooks.resume_path)
                    last_save = now
        bar.close()
        final_train = evaluate(model, train_split.x, train_split.y, autocast=eval_autocast(), forward=chain)
        final_train = tuple(torch.stack(final_train).tolist())
    summary = summarize(metrics, final_train)
    return TrainResult(metrics, summary, time.perf_counter() - t0)
