"""The gradual-pruning stepper: one training whose mask tightens on Zhu & Gupta's schedule.

Before the step at an update index `at` of the schedule (lth.prune.gradual), the mask is recomputed: each
pruned layer keeps its largest-magnitude weights among those still alive, down to the schedule's count. The
mask is part of the stepper's exported state, so a resumed training carries on with the mask it had, and
continues exactly as an uninterrupted one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lth.config import ComputeConfig, TrainConfig
from lth.prune.gradual import GradualSchedule
from lth.prune.mask import Mask
from lth.prune.select import PrunePlan, select
from lth.train.chain import chain_for
from lth.train.module import ChainStepper, ModuleStepper, apply_masks


class GradualStepper(ModuleStepper):
    """One network pruned while it trains. `mask` (optional) is where it starts: all ones by default."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, mask=None, *, device: torch.device,
                 compute: ComputeConfig = ComputeConfig(), schedule: GradualSchedule, plan: PrunePlan):
        super().__init__(model, cfg, None, device=device, compute=compute)
        self.schedule, self.plan = schedule, plan
        start = mask if mask is not None else Mask.ones_like(model, list(plan.sizes))
        self._set_mask(start)

    def _set_mask(self, mask: Mask) -> None:
        params = dict(self.model.named_parameters())
        self.mask = Mask({n: t.to(params[n].device) for n, t in mask.items()})
        self.masked = [params[n] for n in self.mask]
        self.mask_values = [self.mask[n].to(params[n].dtype) for n in self.mask]

    def step(self, batches, lr: float, at: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        if self.schedule.is_update(at):
            params = dict(self.model.named_parameters())
            scores = {n: params[n].detach().abs() for n in self.plan.pruned}
            self._set_mask(select(scores, self.mask, self.plan, self.schedule.counts(at)))
            apply_masks(self.masked, self.mask_values)
        return super().step(batches, lr, at)

    def export(self) -> list[dict[str, Any]]:
        [state] = super().export()
        return [{**state, "mask": {n: t.cpu() for n, t in self.mask.items()}}]

    def load(self, states: list[dict[str, Any]]) -> None:
        super().load(states)
        self._set_mask(Mask(states[0]["mask"]))


class GradualChainStepper(GradualStepper, ChainStepper):
    """The same on the CPU through lth's hand-written MLP chain (the mask multiply is the stepper's own)."""


def gradual_stepper(model: nn.Module, cfg: TrainConfig, mask=None, *, device: torch.device,
                    compute: ComputeConfig = ComputeConfig(), schedule: GradualSchedule,
                    plan: PrunePlan) -> GradualStepper:
    """The chain variant where lth.train.module.single_stepper would use the chain, else the module one."""
    chain = compute.chain and not compute.compile and chain_for(model, device, "torch") is not None
    cls = GradualChainStepper if chain else GradualStepper
    return cls(model, cfg, mask, device=device, compute=compute, schedule=schedule, plan=plan)
