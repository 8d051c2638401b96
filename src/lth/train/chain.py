"""lth's MLPs written out by hand: a network's forward and backward pass without autograd's per-op work (CPU).

Why: a small MLP's CPU step is a few large matrix products plus a few dozen small operations, and each
small one pays dispatcher, autograd-engine and Python costs. Written out, a step is the products (through
oneDNN, lth.train.kernels, with bias and ReLU fused into the forward ones) and a handful of elementwise
operations. The trainer calls `Chain.train_step`, which computes the loss and every gradient directly and
never builds an autograd graph; calling a Chain gives the logits (one autograd node when a gradient is
wanted). benchmarks/throughput.py measures it (`--compute.chain false` turns it off).

It computes exactly the module's function: `chain_layers` accepts only lth's MLP with plain nn.Linear
layers, no active dropout and no hooks; everything else takes the module's own forward. Results match
autograd's within float32 rounding (tests/test_chain.py).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from lth.train.kernels import MIN_FLOPS, onednn_available


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
    if torch.device(device).type != "cpu":
        return None
    if any(p.dtype != torch.float32 for p in model.parameters()):
        return None
    return chain_layers(model)


def chain_usable(model: nn.Module, device: torch.device | str) -> bool:
    """Whether training `model` on `device` can go through this module: a CPU float32 lth MLP
    (chain_layers)."""
    return _usable_layers(model, device) is not None


def _product(a: torch.Tensor, b_t: torch.Tensor, bias: torch.Tensor | None = None, relu: bool = False,
             onednn: bool = True) -> torch.Tensor:
    """a @ b_t.T (+ bias) (then ReLU): oneDNN for large products, PyTorch's kernels for small ones."""
    if onednn and 2 * a.shape[0] * a.shape[1] * b_t.shape[0] >= MIN_FLOPS:
        return torch.ops.mkldnn._linear_pointwise(a, b_t, bias, "relu" if relu else "none", [], "")
    out = torch.addmm(bias, a, b_t.t()) if bias is not None else a.mm(b_t.t())
    return out.relu_() if relu else out


def _forward(onednn: bool, x: torch.Tensor, weights, biases) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(logits, the input of each layer): the hidden layers' inputs are their predecessors' ReLU outputs."""
    acts = [x]
    h = x
    for i, (w, b) in enumerate(zip(weights, biases)):
        hidden = i < len(weights) - 1
        h = _product(h, w, b, relu=hidden, onednn=onednn)
        if hidden:
            acts.append(h)
    return h, acts


def _backward(onednn: bool, grad: torch.Tensor, acts, weights, needs) -> tuple[torch.Tensor | None, list]:
    """(gradient of x, [gradient of weight, of bias] of each layer) from the gradient of the logits.

    `needs`: whether x, then each layer's weight and bias, wants a gradient; None where it does not."""
    depth = len(weights)
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
    return gx, grads


class _Chain(torch.autograd.Function):
    """x [B, in], then weight [out, in] and bias [out] of each layer -> logits [B, classes]."""

    @staticmethod
    def forward(ctx, onednn: bool, x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        weights = params[0::2]
        logits, acts = _forward(onednn, x, weights, params[1::2])
        ctx.save_for_backward(*acts, *weights)
        ctx.onednn = onednn
        return logits

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        depth = len(ctx.saved_tensors) // 2
        acts, weights = ctx.saved_tensors[:depth], ctx.saved_tensors[depth:]
        gx, grads = _backward(ctx.onednn, grad, acts, weights, ctx.needs_input_grad[1:])
        return (None, gx, *grads)


# F.cross_entropy's defaults, spelled as aten's nll_loss arguments: reduction "mean" (enum 1), ignore_index.
_MEAN, _IGNORE_INDEX = 1, -100


class Chain:
    """An lth MLP written out by hand (see the module's docstring). Built by `chain_for`.

    Calling it computes model(x): as one autograd node where a gradient is wanted, as plain products
    otherwise (evaluation). `train_step` is a whole training step's gradient without the autograd engine.
    The layers are looked up once: the trainer builds one for a training, during which the module does not
    change."""

    def __init__(self, layers: list[nn.Linear], onednn: bool):
        self.weights = [layer.weight for layer in layers]
        self.biases = [layer.bias for layer in layers]
        self.params = [p for layer in layers for p in (layer.weight, layer.bias)]
        self.onednn = onednn
        self._one = torch.ones((), dtype=self.weights[0].dtype)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self.params)):
            return _Chain.apply(self.onednn, x, *self.params)
        return _forward(self.onednn, x, self.weights, self.biases)[0]

    @torch.no_grad()
    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean cross-entropy loss, logits) of the batch (x, y); sets each parameter's .grad to its gradient
        (None for a frozen one), replacing what was there.

        The same operations as F.cross_entropy(model(x), y).backward() after zeroing the gradients, in the
        same order, so the gradients are bit for bit the autograd path's through `_Chain`; what it saves is
        the autograd engine's work around them (graph, nodes, gradient accumulation), a visible part of a
        small network's step."""
        aten = torch.ops.aten
        logits, acts = _forward(self.onednn, x.flatten(1), self.weights, self.biases)
        logp = aten._log_softmax(logits, 1, False)
        loss, total_weight = aten.nll_loss_forward(logp, y, None, _MEAN, _IGNORE_INDEX)
        g = aten.nll_loss_backward(self._one, logp, y, None, _MEAN, _IGNORE_INDEX, total_weight)
        g = aten._log_softmax_backward_data(g, logp, 1, logits.dtype)
        _, grads = _backward(self.onednn, g, acts, self.weights, (False, *(p.requires_grad for p in self.params)))
        for p, grad in zip(self.params, grads):
            p.grad = grad
        return loss, logits


def chain_for(model: nn.Module, device: torch.device | str, kernels: str = "auto") -> Chain | None:
    """`model` as a Chain where `chain_usable`, else None. Gradients reach the model's parameters; `kernels`
    is `--compute.kernels` (whether the products may use oneDNN)."""
    layers = _usable_layers(model, device)
    if layers is None:
        return None
    return Chain(layers, onednn_available(kernels))
