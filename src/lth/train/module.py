"""Steppers for one network: through the module and autograd, or through lth's hand-written MLP chain.

The step is kept as plain as nanoGPT's: a batch is one index lookup (done by the loop), the mask is one
fused in-place multiply after the optimizer step, and loss and accuracy stay on the device. On the CPU,
fully connected products go through oneDNN (lth.train.kernels), lth's MLPs skip the autograd engine
(lth.train.chain), and the optimizer is PyTorch's fused kernel called without Optimizer.step's bookkeeping
(lth.train.optim). torch.compile is available (`--compute.compile`) but off by default: on the CPU a small
network's step is its matrix products, which compiling does not speed up.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from lth.config import ComputeConfig, TrainConfig
from lth.train.chain import chain_for
from lth.train.kernels import fast_kernels
from lth.train.metrics import cross_entropy, evaluate
from lth.train.optim import fast_step, make_optimizer, set_lr


def _masked_pairs(model: nn.Module, mask) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The parameters a mask prunes and the mask's values in their device and dtype."""
    if mask is None:
        return [], []
    mask.check_fits(model)
    params = dict(model.named_parameters())
    # A tensor the mask keeps whole (the dense level, an unpruned layer) needs no multiply.
    names = [n for n in mask if not bool(mask[n].all())]
    return [params[n] for n in names], [mask[n].to(params[n].device, params[n].dtype) for n in names]


@torch.no_grad()
def apply_masks(params: list[torch.Tensor], masks: list[torch.Tensor]) -> None:
    """One fused in-place multiply over every masked tensor."""
    if params:
        torch._foreach_mul_(params, masks)


def is_stochastic(model: nn.Module) -> bool:
    """Whether the model draws random numbers in training mode (active dropout)."""
    return any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules())


class ModuleStepper:
    """One network, its forward pass and autograd, with a fixed mask re-applied after every step."""

    size = 1
    batched = False

    def __init__(self, model: nn.Module, cfg: TrainConfig, mask=None, *, device: torch.device,
                 compute: ComputeConfig = ComputeConfig()):
        self.model, self.cfg, self.device = model, cfg, device
        self.optimizer = make_optimizer(self.trainable_parameters(), cfg)
        self.params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.masked, self.mask_values = _masked_pairs(model, mask)
        self.stochastic = is_stochastic(model)
        self.forward = torch.compile(model) if compute.compile else model
        # The context of every forward pass: bfloat16 autocast on CUDA with amp; on the CPU, nn.Linear through
        # oneDNN's AVX-512 kernels instead of MKL's (lth.train.kernels; measured in benchmarks/kernels.py).
        if compute.amp and device.type == "cuda":
            self.autocast = lambda: torch.autocast("cuda", dtype=torch.bfloat16)  # noqa: E731
        elif compute.compile:
            self.autocast = contextlib.nullcontext
        else:
            self.autocast = lambda: fast_kernels(device, compute.kernels)  # noqa: E731
        self._optimizer_step = fast_step(self.optimizer)
        model.train()  # evaluations switch to eval mode and back

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self.model.parameters())

    def start(self) -> None:
        apply_masks(self.masked, self.mask_values)

    def _gradients(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with self.autocast():
            logits = self.forward(x)
            loss = cross_entropy(logits, y)
        for p in self.params:  # optimizer.zero_grad(set_to_none=True) without its per-call wrapper cost
            p.grad = None
        loss.backward()
        return loss, logits

    def step(self, batches, lr: float, at: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        (x, y), = batches
        set_lr(self.optimizer, lr)
        loss, logits = self._gradients(x, y)
        self._optimizer_step()
        apply_masks(self.masked, self.mask_values)
        return loss.detach(), (logits.argmax(-1) == y).sum()

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return evaluate(self.model, x, y, autocast=self.autocast())

    def export(self) -> list[dict[str, Any]]:
        return [{"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}]

    def load(self, states: list[dict[str, Any]]) -> None:
        (state,) = states
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])

    def sync(self) -> None:
        pass


class ChainStepper(ModuleStepper):
    """lth's MLPs on the CPU: the step computes the loss and every gradient without the autograd engine, and
    evaluations use the chain's forward pass (the same function, ReLU fused into the products)."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, mask=None, *, device: torch.device,
                 compute: ComputeConfig = ComputeConfig()):
        super().__init__(model, cfg, mask, device=device, compute=compute)
        chain = chain_for(model, device, compute.kernels)
        if chain is None:
            raise ValueError("ChainStepper needs an lth MLP on the CPU; use `make_stepper` to choose a stepper")
        self.chain = chain

    def _gradients(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.chain.train_step(x, y)

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return evaluate(self.model, x, y, forward=self.chain)


def single_stepper(model: nn.Module, cfg: TrainConfig, mask=None, *, device: torch.device,
                   compute: ComputeConfig = ComputeConfig()) -> ModuleStepper:
    """The stepper for one network: the chain where it computes exactly the module's function and
    `--compute.chain` allows it (never with compile), else the module with autograd."""
    if compute.chain and not compute.compile and chain_for(model, device, "torch") is not None:
        return ChainStepper(model, cfg, mask, device=device, compute=compute)
    return ModuleStepper(model, cfg, mask, device=device, compute=compute)
