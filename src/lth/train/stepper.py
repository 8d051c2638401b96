"""The seat of everything that differs between ways of training: a stepper.

The loop (lth.train.loop) owns a training's lifecycle once: budget, learning-rate schedule, evaluation
cadence, resume, checkpoints, save_at, progress and the summary. A stepper owns the networks, their
optimizer and their masks, and knows how to take one step and how to evaluate. It trains `size` networks
("members") together: one for the module and chain steppers, K for the vmap stepper.

Steppers:
- `ModuleStepper` (lth.train.module): any nn.Module, the module's forward pass and autograd;
- `ChainStepper` (lth.train.module): lth's MLPs on the CPU, forward and backward written out by hand;
- `VmapStepper` (lth.train.vmap): K networks of one architecture in one pass under torch.func.vmap.
A learned-mask stepper (scores trained, weights frozen) fits the same protocol: its step updates the
scores and its members' state holds them.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch


class Stepper(Protocol):
    size: int
    """How many networks it trains together."""
    batched: bool
    """Whether it returns per-member [K] tensors (else 0-d ones for its one member)."""
    stochastic: bool
    """Whether a step draws from torch's global RNG (dropout): then the loop saves and restores that RNG."""

    def start(self) -> None:
        """Before the first step of a fresh (not resumed) training: e.g. zero the pruned weights."""

    def step(self, batches: list[tuple[torch.Tensor, torch.Tensor]], lr: float,
             at: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Step `at` (0-based: the number of steps done before it) of every member on its own batch at
        learning rate `lr`. Steppers whose mask changes during training (gradual pruning, a learned mask)
        read the schedule off `at`.

        Returns (loss, correct) on the device, without a host sync: 0-d tensors for one member, [K] for K."""

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean loss, accuracy) of every member over a whole split; shapes as `step`'s."""

    def export(self) -> list[dict[str, Any]]:
        """Each member's {"model": state_dict, "optimizer": state_dict}, in a per-network format: a state a
        batched stepper exports resumes in a single-network one and the other way round."""

    def load(self, states: list[dict[str, Any]]) -> None:
        """Restore the members from `export`'s output."""

    def sync(self) -> None:
        """Make each member's nn.Module hold its current weights (a no-op where the module trains in place)."""
