"""Training K independent networks of one architecture in one pass, with stacked parameters.

Every parameter of the K networks is held as one leaf tensor [K, ...]; the forward pass is
torch.func.functional_call under torch.func.vmap, so each network sees its own weights and its own batch
(drawn from its own `Batches`, seeded by its own data_seed), and the K losses are summed before one backward
pass (the networks share nothing, so each gradient is that network's own). Adam, AdamW and SGD are
elementwise, so one optimizer over the stacked tensors is K optimizers with a common learning-rate schedule.
Masks are stacked too and re-applied after each step with one fused multiply.

Semantics are those of `lth.train.train` network by network: the same metric rows, the same summary, the
same save_at hooks (called with that network's module, holding its weights at that step), and resumable
state in the same format at each job's own `hooks.resume_path` (a network started batched can be resumed
alone and the other way round). Results equal separate training within floating-point tolerance, not bit for
bit: a batched matrix product rounds differently from K single ones. On the CPU a batched run is
deterministic and each network's numbers do not depend on which (or how many) networks share its pass, so a
resumed group gives bit for bit the numbers of an uninterrupted one.

The IMP DatasetBackend groups a level's trainings with `batch_groups` and batches them on CUDA; on the CPU it
trains them one at a time unless LTH_BATCH=N asks otherwise (`batch_limit`: there the matrix products are
the cost, a pass of K does the same arithmetic, and it measured slower). A network's padded parameter
layout and all reductions are independent of K, which the resume guarantee above rests on.

What cannot be batched here (`why_not_batchable` says why) is trained one at a time by the caller:
- modules with buffers (BatchNorm running statistics): under vmap the in-place running-stat updates would
  need batched buffers and BatchNorm's train/eval switch; not worth the risk for nets (VGG, ResNet) whose
  cost is in the convolutions, not in per-step overhead;
- active dropout (or any stochastic layer): vmap(randomness="different") draws other numbers than the
  sequential loop, so a batched dropout run could not equal a separate one; it is trained alone instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from lth.config import TrainConfig
from lth.train.checkpoint import load_state, save_state, warn_if_threads_differ
from lth.train.loop import (EVAL_BATCH, METRIC_FIELDS, Hooks, TrainResult, resolve_budget,
                            resolve_device, stochastic_seed, summarize)
from lth.train.optim import fast_step, lr_factor, make_optimizer, set_lr

MAX_K = 16
"""Most networks trained in one pass (memory: K copies of weights, optimizer state and activations)."""


def why_not_batchable(model: nn.Module) -> str | None:
    """None if `model` can be trained in a batched pass, else the reason it is trained alone."""
    if any(True for _ in model.buffers()):
        return "it has buffers (e.g. BatchNorm running statistics)"
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0:
            return "it has active dropout (vmap would draw other random numbers than a separate run)"
    if any(not p.is_floating_point() for p in model.parameters()):
        return "it has non-floating-point parameters"
    return None


def architecture_key(model: nn.Module) -> tuple:
    """Networks with equal keys can share a pass: same class, parameter names, shapes and dtypes, same repr."""
    return (type(model), repr(model),
            tuple((n, tuple(p.shape), p.dtype) for n, p in model.named_parameters()))


def config_key(cfg: TrainConfig) -> TrainConfig:
    """Train configs that agree except for data_seed can share a pass."""
    return dataclasses.replace(cfg, data_seed=0)


@dataclass
class Member:
    """One network of a batched pass: the module (holds the start weights; gets the final ones), its own
    train config (data_seed may differ), mask and hooks."""

    model: nn.Module
    cfg: TrainConfig
    mask: Any = None
    hooks: Hooks | None = None


def resume_step(hooks: Hooks | None) -> int | None:
    """The step a network's resumable state is at, or None when it has none (it starts fresh)."""
    if hooks is None or hooks.resume_path is None or not Path(hooks.resume_path).exists():
        return None
    return int(load_state(hooks.resume_path)["step"])


def batch_limit(device: torch.device | str = "cpu") -> int:
    """Most networks per pass; 0 means one network at a time with `train`.

    LTH_BATCH=0 trains one at a time (for benchmarks and debugging); LTH_BATCH=N (N >= 1) batches on any
    device, at most N networks per pass. Unset ("auto"): batched on CUDA (up to MAX_K), one at a time on
    the CPU, where a pass of K networks measured slower than K separate ones (benchmarks/results): the
    small networks' matrix products already run the core at its peak, and stacking K of them only adds
    copies and cache misses.
    """
    text = os.environ.get("LTH_BATCH", "").strip().lower()
    if text in ("", "auto"):
        return MAX_K if torch.device(device).type == "cuda" else 0
    try:
        return max(0, int(text))
    except ValueError:
        raise ValueError(f"LTH_BATCH must be a number (0: no batching, N: at most N networks per pass) or "
                         f"auto, got {text!r}") from None


def batching_enabled_for(model: nn.Module, device: torch.device | str = "cpu") -> bool:
    return batch_limit(device) > 0 and why_not_batchable(model) is None


def batch_groups(models: list[nn.Module], cfgs: list[TrainConfig], start_steps: list[int],
                 hooks: list[Hooks | None], device: torch.device | str = "cpu") -> list[list[int]]:
    """Indices of the trainings, grouped into passes (order kept). Trainings share a pass when their
    networks are batchable with one architecture, their configs agree except data_seed, they start at the
    same step and their resumable states (if any) are at the same step. At most `batch_limit()` per pass.
    A group of one whose network is not batchable (or with batching off) is for `train`."""
    limit = batch_limit(device)
    if limit == 0:
        return [[i] for i in range(len(models))]
    groups: dict[tuple, list[int]] = {}
    for i, (model, cfg, start, h) in enumerate(zip(models, cfgs, start_steps, hooks)):
        if why_not_batchable(model) is not None:
            key: tuple = ("alone", i)
        else:
            key = (architecture_key(model), config_key(cfg), start, resume_step(h))
        groups.setdefault(key, []).append(i)
    out = []
    for members in groups.values():
        out += [members[j:j + limit] for j in range(0, len(members), limit)]
    return sorted(out)


def _initial_rng_state(cfg: TrainConfig) -> torch.Tensor:
    """The global RNG state `train` would run under: saved so that a batched checkpoint also resumes alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stochastic_seed(cfg))
        return torch.get_rng_state()


PAD = 64
"""Each network's values of a parameter start at a multiple of this many elements in the stacked tensor."""


def _padded(n: int) -> int:
    return -(-n // PAD) * PAD


def _split_optimizer_state(sd: dict, k: int, layout: list[tuple[int, tuple[int, ...]]]) -> dict:
    """Network k's optimizer state_dict, as a per-network optimizer over model.parameters() would have it."""
    state = {}
    for i, s in sd["state"].items():
        size, shape = layout[i]
        state[i] = {name: (v[k, :size].reshape(shape).clone() if isinstance(v, torch.Tensor) and v.dim() > 0 else
                           v.clone() if isinstance(v, torch.Tensor) else v) for name, v in s.items()}
    groups = [dict(g, params=list(range(len(layout)))) for g in sd["param_groups"]]
    return {"state": state, "param_groups": groups}


def _stack_optimizer_states(sds: list[dict], flat: dict[str, torch.Tensor]) -> dict:
    """The stacked optimizer's state_dict from per-network ones (the inverse of _split_optimizer_state)."""
    leaves = list(flat.values())
    state = {}
    for i, s in sds[0]["state"].items():
        state[i] = {}
        for name, v in s.items():
            if isinstance(v, torch.Tensor) and v.dim() > 0:
                buf = torch.zeros(leaves[i].shape, dtype=v.dtype)
                for k, sd in enumerate(sds):
                    buf[k, :v.numel()] = sd["state"][i][name].reshape(-1)
                v = buf
            state[i][name] = v
    return {"state": state, "param_groups": sds[0]["param_groups"]}


def train_batched(members: list[Member], data, *, start_step: int = 0, device: str | torch.device | None = None,
                  augment: bool = False, progress: bool | None = None, desc: str = "") -> list[TrainResult]:
    """Train every member's network for its cfg.budget iterations from `start_step`, all in one pass.

    Members must share architecture (`architecture_key`) and train config except data_seed
    (`config_key`), be batchable (`why_not_batchable`), and either all have resumable state at the same
    step or none. Returns one TrainResult per member, in order; `seconds` is the pass's wall time shared
    equally. Each member's model is left in its final state.
    """
    from lth.data import Batches

    if not members:
        return []
    k_count = len(members)
    base, cfg = members[0].model, members[0].cfg
    for m in members:
        reason = why_not_batchable(m.model)
        if reason:
            raise ValueError(f"cannot train this network batched: {reason}")
        if architecture_key(m.model) != architecture_key(base):
            raise ValueError("batched networks must share one architecture")
        if config_key(m.cfg) != config_key(cfg):
            raise ValueError("batched networks must share their train config (all but data_seed)")
    hooks = [m.hooks or Hooks() for m in members]
    device = resolve_device(device) if device is not None else next(base.parameters()).device
    for m in members:
        m.model.to(device)
    train_split, val, test = data.train.to(device), data.val.to(device), data.test.to(device)
    batches = [Batches(train_split, cfg.batch_size, seed=m.cfg.data_seed, augment=augment) for m in members]
    spe = batches[0].steps_per_epoch
    total, eval_every = resolve_budget(cfg, spe, start_step)
    factor = lr_factor(cfg, spe, total)
    use_amp = cfg.amp and device.type == "cuda"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_amp else contextlib.nullcontext

    # Resumable state: all members at one step, or none.
    states = [load_state(h.resume_path) if h.resume_path is not None and Path(h.resume_path).exists() else None
              for h in hooks]
    resumed = states[0] is not None
    if any((s is not None) != resumed for s in states) or (resumed and len({s["step"] for s in states}) > 1):
        raise ValueError("batched networks must all resume from the same step, or all start fresh")
    metrics: list[list[dict[str, Any]]] = [[] for _ in members]
    step = start_step
    if resumed:
        warn_if_threads_differ(states[0], hooks[0].resume_path, device)
        for m, s in zip(members, states):
            m.model.load_state_dict(s["model"])
        metrics, step = [s["metrics"] for s in states], states[0]["step"]

    names = [n for n, _ in base.named_parameters()]
    member_params = [dict(m.model.named_parameters()) for m in members]
    shapes = {n: tuple(member_params[0][n].shape) for n in names}
    sizes = {n: member_params[0][n].numel() for n in names}
    # Each parameter is one leaf [K, L'] with every network's L values padded to L' (a multiple of PAD):
    # the fused optimizer kernels run a vector loop and a scalar tail that round differently, so without
    # the padding a network's update would depend on where its values fall in the stacked tensor (on K).
    flat = {}
    for n in names:
        rows = torch.stack([mp[n].detach().reshape(-1) for mp in member_params])
        buf = rows.new_zeros(k_count, _padded(sizes[n]))
        buf[:, :sizes[n]] = rows
        flat[n] = buf.requires_grad_()
    params = [flat[n] for n in names]

    def stacked() -> dict[str, torch.Tensor]:
        """[K, *shape] views of the flat leaves, for the forward pass (gradients reach the leaves)."""
        return {n: flat[n][:, :sizes[n]].view(k_count, *shapes[n]) for n in names}

    optimizer = make_optimizer(params, cfg)
    if resumed:
        optimizer.load_state_dict(_stack_optimizer_states([s["optimizer"] for s in states], flat))
    optimizer_step = fast_step(optimizer)
    rng_states = [s["rng"] if resumed else _initial_rng_state(m.cfg) for m, s in zip(members, states)]

    # Masks: stacked per masked tensor; tensors that no member prunes are left out of the multiply.
    masked, mask_values = [], []
    for m in members:
        if m.mask is not None:
            m.mask.check_fits(m.model)
    for n in names:
        if not any(m.mask is not None and n in m.mask for m in members):
            continue
        value = torch.zeros(k_count, _padded(sizes[n]), dtype=flat[n].dtype, device=device)
        for k, m in enumerate(members):
            value[k, :sizes[n]] = (m.mask[n].reshape(-1).to(device) if m.mask is not None and n in m.mask else 1)
        if not bool((value[:, :sizes[n]] == 1).all()):
            masked.append(flat[n])
            mask_values.append(value)

    def apply_mask() -> None:
        if masked:
            with torch.no_grad():
                torch._foreach_mul_(masked, mask_values)

    def one(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(base, p, (x,))

    forward_train = vmap(one, in_dims=(0, 0))
    forward_eval = vmap(one, in_dims=(0, None))

    @torch.no_grad()
    def evaluate_all(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean loss [K], accuracy [K]) over a split. Chunks do not depend on K, so neither do the sums."""
        base.eval()
        weights = stacked()
        loss_sum = torch.zeros(k_count, device=device)
        correct = torch.zeros(k_count, device=device)
        for i in range(0, len(x), EVAL_BATCH):
            xb, yb = x[i:i + EVAL_BATCH], y[i:i + EVAL_BATCH]
            with autocast():
                logits = forward_eval(weights, xb)  # [K, B, C]
            losses = F.cross_entropy(logits.float().flatten(0, 1), yb.repeat(k_count), reduction="none")
            loss_sum += losses.view(k_count, -1).sum(1)
            correct += (logits.argmax(-1) == yb).sum(1)
        base.train()
        n = max(1, len(x))
        return loss_sum / n, correct / n

    run_loss = torch.zeros(k_count, device=device)
    run_correct = torch.zeros(k_count, device=device)
    run_n = 0

    def record(at: int) -> None:
        nonlocal run_loss, run_correct, run_n
        vl, va = evaluate_all(val.x, val.y)
        tl, ta = evaluate_all(test.x, test.y)
        rows = torch.stack([run_loss / max(1, run_n), run_correct / max(1, run_n * cfg.batch_size),
                            vl, va, tl, ta], dim=1).tolist()  # the one host sync per evaluation
        for k, values in enumerate(rows):
            if run_n == 0:
                values[0] = values[1] = None
            metrics[k].append(dict(zip(METRIC_FIELDS, [at, *values])))
        run_loss, run_correct, run_n = torch.zeros_like(run_loss), torch.zeros_like(run_correct), 0

    @torch.no_grad()
    def sync_models() -> None:
        for k, mp in enumerate(member_params):
            for n in names:
                mp[n].copy_(flat[n][k, :sizes[n]].view(shapes[n]))

    def call_save_at(at: int) -> None:
        if any(at in h.save_at for h in hooks):
            sync_models()
            for h, m in zip(hooks, members):
                if at in h.save_at:
                    h.save_at[at](at, m.model)

    def checkpoint(at: int) -> None:
        sync_models()
        sd = optimizer.state_dict()
        layout = [(sizes[n], shapes[n]) for n in names]
        for k, (h, m) in enumerate(zip(hooks, members)):
            if h.resume_path is None:
                continue
            save_state({"step": at, "model": m.model.state_dict(), "optimizer": _split_optimizer_state(sd, k, layout),
                        "metrics": metrics[k], "rng": rng_states[k], "cuda_rng": None}, h.resume_path)

    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=step, desc=desc or f"train x{k_count}",
               disable=not progress if progress is not None else None, leave=False, unit="it", dynamic_ncols=True)
    saving = [h.checkpoint_seconds for h in hooks if h.resume_path is not None]
    checkpoint_seconds = min(saving) if saving else None
    t0 = last_save = time.perf_counter()
    if not resumed:
        apply_mask()
        call_save_at(step)
        record(step)
    base.train()
    b = cfg.batch_size
    while step < total:
        xs, ys = zip(*(bt.get(step) for bt in batches))
        x, y = torch.stack(xs), torch.stack(ys)
        set_lr(optimizer, cfg.lr * factor(step))
        with autocast():
            logits = forward_train(stacked(), x)  # [K, B, C]
            losses = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none")
            losses = losses.view(k_count, b).mean(1)
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        optimizer_step()
        apply_mask()
        run_loss += losses.detach()
        run_correct += (logits.argmax(-1) == y).sum(1)
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
    train_loss, train_acc = evaluate_all(train_split.x, train_split.y)
    finals = torch.stack([train_loss, train_acc], dim=1).tolist()
    sync_models()
    seconds = (time.perf_counter() - t0) / k_count
    return [TrainResult(metrics[k], summarize(metrics[k], tuple(finals[k])), seconds) for k in range(k_count)]
