"""Fully connected layers through oneDNN on the CPU.

PyTorch's CPU builds multiply float32 matrices with MKL, whose kernels on AMD processors stop at AVX2; the
oneDNN library that ships inside PyTorch picks AVX-512 where the processor has it. The small networks of
lottery-ticket experiments spend most of a CPU training step in these products, so `fast_kernels()` routes
`F.linear` (every nn.Linear) to oneDNN for the forward pass and for both products of the backward pass.
`benchmarks/kernels.py` measures both kernels and the share of a LeNet step spent in products
(benchmarks/results/kernels_cpu.md); `benchmarks/throughput.py` measures whole training steps.

It is a TorchFunctionMode entered around the model's forward pass only (never around the optimizer or the
bookkeeping, where it would only add overhead); the model itself is not touched. Anything it does not
handle (other devices, other dtypes, tensor subclasses, a weight that is not 2-D) goes to `F.linear` as
before. It is checked once per process against `F.linear` and turned off if oneDNN is missing or disagrees.
`--compute.kernels torch` turns it off; `--compute.kernels onednn` requires it.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable
from torch.overrides import TorchFunctionMode

_available: bool | None = None

MIN_FLOPS = 8e6
"""Smaller products stay with PyTorch's kernels: a oneDNN call has a fixed setup cost that outweighs its
gain on small products such as LeNet's 100 -> 10 output layer (0.1 MFLOP at batch 60)."""


def _mm(a: torch.Tensor, b_t: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """a @ b_t.T (+ bias) in oneDNN; a and b_t may be strided views (transposes are not copied)."""
    return torch.ops.mkldnn._linear_pointwise(a, b_t, bias, "none", [], "")


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        y = _mm(x.reshape(-1, x.shape[-1]), weight, bias)
        return y.view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        g = grad.reshape(-1, grad.shape[-1])
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = _mm(g, weight.t()).view(x.shape)  # g @ W
        if ctx.needs_input_grad[1]:
            gw = _mm(g.t(), x.reshape(-1, x.shape[-1]).t())  # g^T @ x, already in W's layout
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = g.sum(0)
        return gx, gw, gb


def _handles(x, weight, bias) -> bool:
    def plain(t):
        return type(t) is torch.Tensor or type(t) is torch.nn.Parameter

    return (plain(x) and plain(weight) and (bias is None or plain(bias)) and x.device.type == "cpu"
            and weight.device.type == "cpu" and x.dtype == weight.dtype == torch.float32
            and (bias is None or bias.dtype == torch.float32) and weight.dim() == 2 and x.dim() >= 2
            and x.shape[-1] == weight.shape[1] and x.numel() > 0)


class _OneDNNLinear(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear:
            x, weight, *rest = args
            bias = rest[0] if rest else kwargs.get("bias")
            if _handles(x, weight, bias) and 2 * x.numel() * weight.shape[0] >= MIN_FLOPS:
                return _Linear.apply(x, weight, bias)
        return func(*args, **kwargs)


def onednn_available(kernels: str = "auto") -> bool:
    """Whether fully connected products go through oneDNN under the `--compute.kernels` setting: never for
    "torch"; otherwise when oneDNN's linear is present and agrees with F.linear (checked once per process).
    "onednn" makes its absence an error instead of a silent fallback."""
    global _available
    if kernels == "torch":
        return False
    if _available is None:
        _available = _probe()
    if kernels == "onednn" and not _available:
        from lth.errors import ConfigError

        raise ConfigError("--compute.kernels onednn: oneDNN's linear is not available in this PyTorch build "
                          "(or disagrees with F.linear); use --compute.kernels auto or torch")
    return _available


def _probe() -> bool:
    with torch.enable_grad():  # the first caller may be inside no_grad (an evaluation, an autograd node)
        return _probe_products()


def _probe_products() -> bool:
    try:
        if not torch.backends.mkldnn.is_available():
            return False
        g = torch.Generator().manual_seed(0)
        x = torch.randn(9, 2, 7, generator=g, requires_grad=True)
        w = torch.randn(5, 7, generator=g, requires_grad=True)
        b = torch.randn(5, generator=g, requires_grad=True)
        up = torch.randn(9, 2, 5, generator=g)
        with _OneDNNLinear():
            ours = _Linear.apply(x, w, b)
        grads = torch.autograd.grad(ours, (x, w, b), up)
        ref = F.linear(x, w, b)
        ref_grads = torch.autograd.grad(ref, (x, w, b), up)
        return all(torch.allclose(a, r, rtol=1e-5, atol=1e-5) for a, r in zip((ours, *grads), (ref, *ref_grads)))
    except Exception:  # an old or unusual build without the op: PyTorch's own kernels then
        return False


def fast_kernels(device: torch.device | str = "cpu", kernels: str = "auto") -> contextlib.AbstractContextManager:
    """A context for the model's forward pass: oneDNN linear layers on the CPU where available and not turned
    off by `kernels`, else nothing."""
    if torch.device(device).type == "cpu" and onednn_available(kernels):
        return _OneDNNLinear()
    return contextlib.nullcontext()
