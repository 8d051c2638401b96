"""lth's MLPs written out by hand: a network's forward and backward pass as one autograd node (CPU).

Why: a small MLP's CPU step is a few large matrix products plus a few dozen small operations, and each
small one pays dispatcher, autograd-engine and Python costs. Written out, a step is the products (through
oneDNN, lth.train.kernels, with bias and ReLU fused into the forward ones) and a handful of elementwise
operations, and the autograd engine sees one node instead of a dozen. benchmarks/throughput.py measures
it (LTH_CHAIN=0 turns it off).

It computes exactly the module's function: `chain_layers` accepts only lth's MLP with plain nn.Linear
layers, no active dropout and no hooks; everything else takes the module's own forward. Results match
autograd's within float32 rounding (tests/test_chain.py).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from lth.train.kernels import MIN_FLOPS, env_switch, onednn_available


def chain_layers(model: nn.Module) -> list[nn.Linear] | None:
    """The fc layers of `model`, in order, if it is an lth MLP that this module computes exactly; else None.

    Exactly: every fc layer a plain nn.Linear with a bias, no dropout that is on, and no hooks anywhere
    (a hook, such as find_tickets' mask hook, must see the module's own forward pass)."""
    from lth.models.mlp import MLP

    if type(model) is not MLP:
        return None
    layers = [getattr(model, f"fc{i + 1}") for i in range(model.depth)]
    if any(type(layer) is not nn.Linear or layer.bias is None for layer in layers):
        return None
    if not isinstance(model.dropout, nn.Identity) and model.dropout.p > 0:
        return None
    if _has_hooks(model):
        return None
    return layers


def _has_hooks(model: nn.Module) -> bool:
    from torch.nn.modules import module as mod

    if mod._global_forward_hooks or mod._global_forward_pre_hooks or mod._global_backward_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
               for m in model.modules())


def _usable_layers(model: nn.Module, device: torch.device | str) -> list[nn.Linear] | None:
    if not env_switch("LTH_CHAIN", True) or torch.device(device).type != "cpu":
        return None
    if any(p.dtype != torch.float32 for p in model.parameters()):
        return None
    return chain_layers(model)


def chain_usable(model: nn.Module, device: torch.device | str) -> bool:
    """Whether training `model` on `device` goes through this module: a CPU float32 lth MLP (chain_layers),
    unless LTH_CHAIN=0."""
    return _usable_layers(model, device) is not None


def _product(a: torch.Tensor, b_t: torch.Tensor, bias: torch.Tensor | None = None, relu: bool = False,
             onednn: bool = True) -> torch.Tensor:
    """a @ b_t.T (+ bias) (then ReLU): oneDNN for large products, PyTorch's kernels for small ones."""
    if onednn and 2 * a.shape[0] * a.shape[1] * b_t.shape[0] >= MIN_FLOPS:
        return torch.ops.mkldnn._linear_pointwise(a, b_t, bias, "relu" if relu else "none", [], "")
    out = torch.addmm(bias, a, b_t.t()) if bias is not None else a.mm(b_t.t())
    return out.relu_() if relu else out


class _Chain(torch.autograd.Function):
    """x [B, in], then weight [out, in] and bias [out] of each layer -> logits [B, classes]."""

    @staticmethod
    def forward(ctx, onednn: bool, x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        weights, biases = params[0::2], params[1::2]
        acts = [x]  # the input of each layer (after ReLU for the hidden ones)
        h = x
        for i, (w, b) in enumerate(zip(weights, biases)):
            hidden = i < len(weights) - 1
            h = _product(h, w, b, relu=hidden, onednn=onednn)
            if hidden:
                acts.append(h)
        ctx.save_for_backward(*acts, *weights)
        ctx.onednn = onednn
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        onednn = ctx.onednn
        depth = len(ctx.saved_tensors) // 2
        acts, weights = ctx.saved_tensors[:depth], ctx.saved_tensors[depth:]
        needs = ctx.needs_input_grad[1:]  # x, then weight and bias of each layer
        grads: list[torch.Tensor | None] = [None] * (2 * depth)
        g, gx = grad, None
        for i in reversed(range(depth)):
            a = acts[i]
            if needs[1 + 2 * i]:
                grads[2 * i] = _product(g.t(), a.t(), onednn=onednn)  # g^T a, already in the weight's layout
            if needs[2 + 2 * i]:
                grads[2 * i + 1] = g.sum(0)
            if not any(needs[:1 + 2 * i]):  # nothing below this layer wants a gradient (frozen layers)
                break
            if i > 0:
                # ReLU's gradient, as autograd computes it: zero where the ReLU's output `a` is not positive.
                g = torch.ops.aten.threshold_backward(_product(g, weights[i].t(), onednn=onednn), a, 0)
            else:
                gx = _product(g, weights[i].t(), onednn=onednn)
        return (None, gx, *grads)


def chain_forward_fn(model: nn.Module, device: torch.device | str):
    """A function x -> model(x) as one hand-written autograd node where `chain_usable`, else None.

    Gradients reach the model's parameters. The layers are looked up once: the trainer calls it for one
    training, during which the module does not change."""
    layers = _usable_layers(model, device)
    if layers is None:
        return None
    params = [p for layer in layers for p in (layer.weight, layer.bias)]
    onednn = onednn_available()
    return lambda x: _Chain.apply(onednn, x.flatten(1), *params)
