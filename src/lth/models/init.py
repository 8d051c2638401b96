"""Weight initializers and `initialize`, the deterministic re-draw used for θ_0 and for the
random-reinitialization control.

Every draw uses a private CPU `torch.Generator`, so the global RNG (and with it the data order of anything
else seeded globally) is untouched, and the same seed gives bit-identical weights on any device: the weights
are drawn on the CPU in float32 and then copied to the parameter's device and dtype.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn
from torch.nn.utils import parametrize

from lth.errors import ConfigError

# An initializer fills a float32 CPU tensor in place from `generator`.
Initializer = Callable[[torch.Tensor, torch.Generator], None]

WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORMS = (nn.modules.batchnorm._BatchNorm,)  # BatchNorm1d/2d/3d and SyncBatchNorm


def _fan_in(w: torch.Tensor) -> int:
    return w.shape[1] * math.prod(w.shape[2:])


def _signed_kaiming_constant(w: torch.Tensor, g: torch.Generator) -> None:
    # Ramanujan et al. (edge-popup): every weight is ±sqrt(2/fan_in) (ReLU gain / sqrt(fan_in)),
    # the sign a fair coin.
    signs = torch.randint(0, 2, w.shape, generator=g, dtype=w.dtype).mul_(2).sub_(1)
    w.copy_(signs * math.sqrt(2.0 / _fan_in(w)))


INITIALIZERS: dict[str, Initializer] = {
    # Gaussian Glorot: Frankle & Carbin's initialization; std = sqrt(2 / (fan_in + fan_out)).
    "glorot_normal": lambda w, g: nn.init.xavier_normal_(w, generator=g),
    "glorot_uniform": lambda w, g: nn.init.xavier_uniform_(w, generator=g),
    # He et al. with the ReLU gain and fan_in: std = sqrt(2 / fan_in).
    "kaiming_normal": lambda w, g: nn.init.kaiming_normal_(w, nonlinearity="relu", generator=g),
    "kaiming_uniform": lambda w, g: nn.init.kaiming_uniform_(w, nonlinearity="relu", generator=g),
    "signed_kaiming_constant": _signed_kaiming_constant,
}


def check_scheme(scheme: str) -> None:
    if scheme not in INITIALIZERS:
        raise ConfigError(f"unknown initializer {scheme!r}; known: {', '.join(INITIALIZERS)}")


def _raw(module: nn.Module, name: str) -> torch.Tensor | None:
    """The stored tensor behind `module.<name>`; under a parametrization (e.g. a pruning mask) that is
    the original, since the parametrized attribute is computed and cannot be written."""
    if parametrize.is_parametrized(module, name):
        return getattr(module.parametrizations, name).original
    return getattr(module, name, None)


@torch.no_grad()
def initialize(model: nn.Module, scheme: str, seed: int) -> None:
    """Re-draw every Linear/Conv, Embedding and LSTM/GRU/RNN weight of `model` from `scheme`,
    deterministically from `seed`.

    Biases become 0; BatchNorm and LayerNorm weight 1, bias 0, running statistics reset. Other parameters
    (edge-popup scores) are left alone. Modules are visited in `model.modules()` order, which is fixed by the
    architecture, so the same seed gives the same weights.
    """
    check_scheme(scheme)
    fill = INITIALIZERS[scheme]
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    for module in model.modules():
        if isinstance(module, WEIGHTED):
            weight = _raw(module, "weight")
            weight.copy_(_draw(tuple(weight.shape), fill, g))
            bias = _raw(module, "bias")
            if bias is not None:
                bias.zero_()
        elif isinstance(module, NORMS):
            module.reset_running_stats()
            if module.affine:
                _raw(module, "weight").fill_(1.0)
                _raw(module, "bias").zero_()
        elif isinstance(module, nn.LayerNorm) and module.elementwise_affine:
            _raw(module, "weight").fill_(1.0)
            bias = _raw(module, "bias")
            if bias is not None:
                bias.zero_()
        elif isinstance(module, nn.Embedding):
            _draw_embedding(module, fill, g)
        elif isinstance(module, nn.RNNBase):
            _draw_recurrent(module, fill, g)


def _draw(shape: tuple[int, ...], fill: Initializer, g: torch.Generator) -> torch.Tensor:
    out = torch.empty(shape, dtype=torch.float32)
    fill(out, g)
    return out


def _draw_embedding(module: nn.Embedding, fill: Initializer, g: torch.Generator) -> None:
    # An embedding [V, D] is the linear map one-hot(V) -> D, i.e. a Linear weight [D, V] transposed: drawn as
    # that, so fan-in and fan-out mean what they mean for every other layer.
    weight = _raw(module, "weight")
    weight.copy_(_draw(tuple(weight.shape[::-1]), fill, g).t())
    if module.padding_idx is not None:
        weight[module.padding_idx].zero_()


def _draw_recurrent(module: nn.RNNBase, fill: Initializer, g: torch.Generator) -> None:
    # weight_ih/weight_hh stack one [H, in] matrix per gate (LSTM 4, GRU 3): each gate is a linear map of its
    # own, so each is drawn as one (fan-out H, not 4H). Values are copied into the existing tensors, which
    # keeps cuDNN's flattened weight buffer valid.
    for name in module._flat_weights_names:
        param = _raw(module, name)
        if name.startswith("bias"):
            param.zero_()
            continue
        gates = param.shape[0] // module.hidden_size if name.startswith(("weight_ih", "weight_hh")) else 1
        rows = param.shape[0] // gates
        param.copy_(torch.cat([_draw((rows, *param.shape[1:]), fill, g) for _ in range(gates)]))
