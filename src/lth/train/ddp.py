"""Data-parallel training of one network over the ranks of a torch.distributed group (torchrun): a stepper
that wraps the one-network stepper (module or chain).

The loop hands every rank the same global batch, from the same data order. Rank r keeps its shard (the
batch's rows split as evenly as possible) and computes the gradients of its shard's mean loss. One
all-reduce then sums every rank's gradients, each weighted by its shard's share of the batch, together with
the loss and the correct count. So every rank holds the gradient of the global batch's mean loss, as one
process would on the whole batch (up to the rounding of the split sums), takes the same optimizer step and
re-applies the same mask: the weights stay identical on every rank, bit for bit (`agreement` checks it).

Evaluation runs the whole split on every rank. Dropout draws each step from a seed of (data seed, rank,
step), so shards draw different masks and a resumed training draws what an uninterrupted one would.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from lth.seeds import seed_for
from lth.train.module import apply_masks
from lth.train.optim import set_lr


def shard_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """Rows [lo, hi) of a batch of n that rank `rank` of `world` trains on (sizes differ by at most one)."""
    return rank * n // world, (rank + 1) * n // world


class DDPStepper:
    """`inner` (a ModuleStepper or ChainStepper of this rank's copy of the network), data-parallel."""

    size = 1
    batched = False

    def __init__(self, inner, *, data_seed: int = 0, group=None):
        self.inner, self.group, self.data_seed = inner, group, data_seed
        self.device, self.stochastic = inner.device, inner.stochastic
        self.rank, self.world_size = dist.get_rank(group), dist.get_world_size(group)
        self.params = inner.params

    def start(self) -> None:
        """Every rank starts from rank 0's weights (they were built alike; this makes sure)."""
        with torch.no_grad():
            for p in self.params:
                dist.broadcast(p, 0, group=self.group)
        self.inner.start()

    def step(self, batches, lr: float, at: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        (x, y), = batches
        lo, hi = shard_bounds(len(x), self.rank, self.world_size)
        share = (hi - lo) / len(x)
        inner = self.inner
        if self.stochastic:
            torch.manual_seed(seed_for("ddp_dropout", self.data_seed, self.rank, at))
        set_lr(inner.optimizer, lr)
        loss, logits = inner._gradients(x[lo:hi], y[lo:hi])
        correct = (logits.argmax(-1) == y[lo:hi]).sum()
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        dtype = grads[0].dtype
        # One buffer, one all-reduce: the weighted gradients, the weighted loss, and the correct count.
        flat = torch.cat([g.reshape(-1) * share for g in grads]
                         + [(loss.detach() * share).reshape(1).to(dtype), correct.reshape(1).to(dtype)])
        dist.all_reduce(flat, group=self.group)
        offset = 0
        for p, g in zip(self.params, grads):
            p.grad = flat[offset:offset + g.numel()].view_as(g)
            offset += g.numel()
        inner._optimizer_step()
        apply_masks(inner.masked, inner.mask_values)
        return flat[-2], flat[-1]

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inner.evaluate(x, y)

    def export(self) -> list[dict[str, Any]]:
        """The network's state, with the world size it was trained at (resuming at another one warns)."""
        return [{**state, "world_size": self.world_size} for state in self.inner.export()]

    def load(self, states: list[dict[str, Any]]) -> None:
        self.inner.load(states)

    def agree(self, states: list[dict] | None) -> list[dict] | None:
        """Rank 0's resume state on every rank (only rank 0 reads the run folder)."""
        box = [states]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def sync(self) -> None:
        self.inner.sync()

    def agreement(self) -> float:
        """The largest difference of any weight between two ranks (0.0 when they agree bit for bit)."""
        flat = torch.cat([p.detach().reshape(-1).float() for p in self.params])
        high, low = flat.clone(), flat.clone()
        dist.all_reduce(high, op=dist.ReduceOp.MAX, group=self.group)
        dist.all_reduce(low, op=dist.ReduceOp.MIN, group=self.group)
        return float((high - low).max()) if flat.numel() else 0.0
