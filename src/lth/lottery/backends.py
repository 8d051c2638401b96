"""Who builds and trains the networks of an IMP run.

- DatasetBackend: a registered model on a registered dataset, trained by lth.train (the CLI's path).
- FunctionBackend: a user's own model factory and training function; lth does the pruning, rewinding,
  controls and bookkeeping around it.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from lth.config import ExperimentConfig
from lth.lottery.imp import Job, finish
from lth.prune import Mask
from lth.store import RunStore
from lth.train import to_iterations, train
from lth.train.batched import Member, batch_groups, batching_enabled_for, train_batched


class DatasetBackend:
    def __init__(self, cfg: ExperimentConfig, data, device: torch.device, progress: bool | None = None):
        from lth.data import Batches

        self.cfg, self.data, self.device, self.progress = cfg, data, device, progress
        spe = Batches(data.train, cfg.train.batch_size, seed=0).steps_per_epoch
        self.total = to_iterations(cfg.train.budget, spe, "--train.budget")
        self.k = to_iterations(cfg.lottery.rewind, spe, "--lottery.rewind")
        if self.k >= self.total:
            raise ValueError(f"--lottery.rewind {cfg.lottery.rewind} is step {self.k}, at or beyond the training "
                             f"budget of {self.total} iterations; rewind to an early step (0it for reset, or a "
                             "few percent of training)")

    def build(self, seed: int) -> nn.Module:
        from lth.models import build_model

        return build_model(self.cfg.model, input_shape=self.data.input_shape,
                           num_classes=self.data.num_classes, seed=seed)

    def rewind_step(self) -> int:
        return self.k

    def train(self, jobs: list[Job], store: RunStore) -> None:
        """Train the level's jobs: in batched passes (lth.train.batched) where they share architecture,
        budget, start step and train config except data_seed, and resume from the same step; one at a
        time where they don't or can't (BatchNorm, dropout; see `why_not_batchable`), and wherever batching
        is off (`batch_limit`: by default on the CPU, where it does not pay; LTH_BATCH=0 anywhere)."""
        # Replicate r draws its own data order; every branch of a replicate shares it.
        cfgs = [dataclasses.replace(self.cfg.train, data_seed=self.cfg.train.data_seed + job.unit.replicate)
                for job in jobs]
        for group in batch_groups([job.model for job in jobs], cfgs, [job.start_step for job in jobs],
                                  [job.hooks for job in jobs], self.device):
            if len(group) == 1 and not batching_enabled_for(jobs[group[0]].model, self.device):
                job = jobs[group[0]]
                result = train(job.model, self.data, cfgs[group[0]], mask=job.mask, start_step=job.start_step,
                               hooks=job.hooks, device=self.device, augment=self.cfg.data.augment,
                               progress=self.progress, desc=job.unit.key)
                finish(job, store, result.metrics, result.summary, result.seconds)
                continue
            members = [Member(jobs[i].model, cfgs[i], jobs[i].mask, jobs[i].hooks) for i in group]
            results = train_batched(members, self.data, start_step=jobs[group[0]].start_step, device=self.device,
                                    augment=self.cfg.data.augment, progress=self.progress,
                                    desc=" ".join(jobs[i].unit.key for i in group))
            for i, result in zip(group, results):
                finish(jobs[i], store, result.metrics, result.summary, result.seconds)


class FunctionBackend:
    """`model_fn()` (or `model_fn(seed)`) builds the network; `train_fn(model, mask)` trains it in place and
    returns a dict of numbers (e.g. {"test_acc": 0.97}). While `train_fn` runs, the mask is re-applied
    before every forward pass, so any training loop keeps pruned weights at zero."""

    def __init__(self, model_fn: Callable[..., nn.Module], train_fn: Callable[[nn.Module, Mask], dict[str, Any]]):
        self.model_fn, self.train_fn = model_fn, train_fn
        self._takes_seed = len(inspect.signature(model_fn).parameters) > 0

    def build(self, seed: int) -> nn.Module:
        if self._takes_seed:
            return self.model_fn(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.model_fn()

    def rewind_step(self) -> int:
        return 0

    def train(self, jobs: list[Job], store: RunStore) -> None:
        for job in jobs:
            job.mask.apply_(job.model)
            handle = job.model.register_forward_pre_hook(lambda module, args, m=job.mask: m.apply_(module))
            t0 = time.perf_counter()
            try:
                out = self.train_fn(job.model, job.mask) or {}
            finally:
                handle.remove()
            job.mask.apply_(job.model)
            summary = {k: float(v) for k, v in out.items() if isinstance(v, (int, float))}
            finish(job, store, [], summary, time.perf_counter() - t0)
