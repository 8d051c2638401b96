"""K independent networks of one architecture trained in one pass, with stacked parameters.

Every parameter of the K networks is held as one leaf tensor [K, ...]; the forward pass is
torch.func.functional_call under torch.func.vmap, so each network sees its own weights and its own batch
(drawn by the loop from its own data order), and the K losses are summed before one backward pass (the
networks share nothing, so each gradient is that network's own). Adam, AdamW and SGD are elementwise, so one
optimizer over the stacked tensors is K optimizers with a common learning-rate schedule. Masks are stacked
too and re-applied after each step with one fused multiply.

Results equal separate training within floating-point tolerance, not bit for bit: a batched matrix product
rounds differently from K single ones. On the CPU a batched run is deterministic and each network's numbers
do not depend on which (or how many) networks share its pass, so a resumed group gives bit for bit the
numbers of an uninterrupted one. Each member's exported state has the single-network format, so a network
started batched can be resumed alone and the other way round.

Where batching is used is `--compute.batch` (ComputeConfig.batch_limit): by default on CUDA only. On the
CPU the small networks' matrix products already run the core at its peak, and stacking K of them only adds
copies and cache misses (benchmarks/batched.py measured it slower).

What cannot be batched (`why_not_batchable` says why) is trained one at a time:
- modules with buffers (BatchNorm running statistics): under vmap the in-place running-stat updates would
  need batched buffers and BatchNorm's train/eval switch; not worth the risk for nets (VGG, ResNet) whose
  cost is in the convolutions, not in per-step overhead;
- active dropout (or any stochastic layer): vmap(randomness="different") draws other numbers than the
  sequential loop, so a batched dropout run could not equal a separate one.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap

from lth.config import ComputeConfig, TrainConfig
from lth.train.metrics import EVAL_BATCH, cross_entropy
from lth.train.module import is_stochastic
from lth.train.optim import fast_step, make_optimizer, set_lr

PAD = 64
"""Each network's values of a parameter start at a multiple of this many elements in the stacked tensor."""


def why_not_batchable(model: nn.Module) -> str | None:
    """None if `model` can be trained in a batched pass, else the reason it is trained alone."""
    if any(True for _ in model.buffers()):
        return "it has buffers (e.g. BatchNorm running statistics)"
    if any(isinstance(m, nn.RNNBase) for m in model.modules()):
        return "it has a recurrent layer (torch.func.vmap has no batching rule for aten::lstm)"
    if is_stochastic(model):
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


def batch_groups(models: list[nn.Module], cfgs: list[TrainConfig], start_steps: list[int],
                 resume_steps: list[int | None], limit: int, alone: list[bool] | None = None) -> list[list[int]]:
    """Indices of the trainings, grouped into passes (order kept). Trainings share a pass when their
    networks are batchable with one architecture, their configs agree except data_seed, they start at the
    same step and their resumable states (if any) are at the same step. At most `limit` per pass; limit 0
    means one at a time; `alone[i]` keeps training i out of every group."""
    if limit == 0:
        return [[i] for i in range(len(models))]
    alone = alone or [False] * len(models)
    groups: dict[tuple, list[int]] = {}
    for i, (model, cfg, start, resume) in enumerate(zip(models, cfgs, start_steps, resume_steps)):
        if alone[i] or why_not_batchable(model) is not None:
            key: tuple = ("alone", i)
        else:
            key = (architecture_key(model), config_key(cfg), start, resume)
        groups.setdefault(key, []).append(i)
    out = []
    for members in groups.values():
        out += [members[j:j + limit] for j in range(0, len(members), limit)]
    return sorted(out)


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


def _stack_optimizer_states(sds: list[dict], leaves: list[torch.Tensor]) -> dict:
    """The stacked optimizer's state_dict from per-network ones (the inverse of _split_optimizer_state)."""
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


class VmapStepper:
    """K networks (`models`, one architecture) with their masks, trained under one train config (their
    data seeds may differ: the loop draws each member's batches)."""

    batched = True
    stochastic = False

    def __init__(self, models: list[nn.Module], cfg: TrainConfig, masks: list[Any], *, device: torch.device,
                 compute: ComputeConfig = ComputeConfig()):
        self.base, self.models, self.size, self.device = models[0], models, len(models), device
        for m in models:
            reason = why_not_batchable(m)
            if reason:
                raise ValueError(f"cannot train this network batched: {reason}")
            if architecture_key(m) != architecture_key(self.base):
                raise ValueError("batched networks must share one architecture")
        use_amp = compute.amp and device.type == "cuda"
        self.autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_amp else contextlib.nullcontext
        self.names = [n for n, _ in self.base.named_parameters()]
        self.member_params = [dict(m.named_parameters()) for m in models]
        self.shapes = {n: tuple(self.member_params[0][n].shape) for n in self.names}
        self.sizes = {n: self.member_params[0][n].numel() for n in self.names}
        k = self.size
        # Each parameter is one leaf [K, L'] with every network's L values padded to L' (a multiple of PAD):
        # the fused optimizer kernels run a vector loop and a scalar tail that round differently, so without
        # the padding a network's update would depend on where its values fall in the stacked tensor (on K).
        self.flat = {}
        for n in self.names:
            rows = torch.stack([mp[n].detach().reshape(-1) for mp in self.member_params])
            buf = rows.new_zeros(k, _padded(self.sizes[n]))
            buf[:, :self.sizes[n]] = rows
            self.flat[n] = buf.requires_grad_()
        self.leaves = [self.flat[n] for n in self.names]
        self.optimizer = make_optimizer(self.leaves, cfg)
        self._optimizer_step = fast_step(self.optimizer)
        self.masked, self.mask_values = self._stack_masks(masks)

        def one(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            return functional_call(self.base, p, (x,))

        self.forward_train = vmap(one, in_dims=(0, 0))
        self.forward_eval = vmap(one, in_dims=(0, None))
        self.base.train()

    def _stack_masks(self, masks: list[Any]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Stacked per masked tensor; tensors that no member prunes are left out of the multiply."""
        for m, mask in zip(self.models, masks):
            if mask is not None:
                mask.check_fits(m)
        masked, values = [], []
        for n in self.names:
            if not any(mask is not None and n in mask for mask in masks):
                continue
            value = torch.zeros(self.size, _padded(self.sizes[n]), dtype=self.flat[n].dtype, device=self.device)
            for k, mask in enumerate(masks):
                value[k, :self.sizes[n]] = (mask[n].reshape(-1).to(self.device) if mask is not None and n in mask
                                            else 1)
            if not bool((value[:, :self.sizes[n]] == 1).all()):
                masked.append(self.flat[n])
                values.append(value)
        return masked, values

    def stacked(self) -> dict[str, torch.Tensor]:
        """[K, *shape] views of the flat leaves, for the forward pass (gradients reach the leaves)."""
        return {n: self.flat[n][:, :self.sizes[n]].view(self.size, *self.shapes[n]) for n in self.names}

    def _apply_masks(self) -> None:
        if self.masked:
            with torch.no_grad():
                torch._foreach_mul_(self.masked, self.mask_values)

    def start(self) -> None:
        self._apply_masks()

    def step(self, batches, lr: float, at: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = zip(*batches)
        x, y = torch.stack(xs), torch.stack(ys)
        set_lr(self.optimizer, lr)
        with self.autocast():
            logits = self.forward_train(self.stacked(), x)  # [K, B, ..., C]
            losses = cross_entropy(logits.flatten(0, 1), y.flatten(0, 1), reduction="none")
            losses = losses.view(self.size, -1).mean(1)
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        self._optimizer_step()
        self._apply_masks()
        return losses.detach(), (logits.argmax(-1) == y).flatten(1).sum(1)

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean loss [K], accuracy [K]) over a split. Chunks do not depend on K, so neither do the sums."""
        k = self.size
        self.base.eval()
        weights = self.stacked()
        loss_sum = torch.zeros(k, device=self.device)
        correct = torch.zeros(k, device=self.device)
        for i in range(0, len(x), EVAL_BATCH):
            xb, yb = x[i:i + EVAL_BATCH], y[i:i + EVAL_BATCH]
            with self.autocast():
                logits = self.forward_eval(weights, xb)  # [K, B, ..., C]
            targets = yb.expand(k, *yb.shape)
            losses = cross_entropy(logits.flatten(0, 1), targets.flatten(0, 1), reduction="none")
            loss_sum += losses.view(k, -1).sum(1)
            correct += (logits.argmax(-1) == yb).flatten(1).sum(1)
        self.base.train()
        n = max(1, y.numel())
        return loss_sum / n, correct / n

    @torch.no_grad()
    def sync(self) -> None:
        for k, mp in enumerate(self.member_params):
            for n in self.names:
                mp[n].copy_(self.flat[n][k, :self.sizes[n]].view(self.shapes[n]))

    def export(self) -> list[dict[str, Any]]:
        self.sync()
        sd = self.optimizer.state_dict()
        layout = [(self.sizes[n], self.shapes[n]) for n in self.names]
        return [{"model": m.state_dict(), "optimizer": _split_optimizer_state(sd, k, layout)}
                for k, m in enumerate(self.models)]

    def load(self, states: list[dict[str, Any]]) -> None:
        with torch.no_grad():
            for k, s in enumerate(states):
                self.models[k].load_state_dict(s["model"])
                for n in self.names:
                    self.flat[n][k, :self.sizes[n]] = self.member_params[k][n].detach().reshape(-1)
        self.optimizer.load_state_dict(_stack_optimizer_states([s["optimizer"] for s in states], self.leaves))
