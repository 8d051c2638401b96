"""Which weights of a model are prunable, which is the output layer, and how many weights there are.

Models of this package say so explicitly (`prunable_names`, `output_name`); any other nn.Module gets the
convention below, so a user's own network works with the pruning code unchanged.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from lth.errors import ConfigError

PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_KINDS = ((_CONV, "conv"), (nn.Linear, "linear"), (nn.Embedding, "embedding"), (nn.RNNBase, "recurrent"),
          (nn.MultiheadAttention, "attention"))


def _declared(model: nn.Module, attr: str):
    """The model's own answer: an attribute, a property, or a method (called)."""
    value = getattr(model, attr, None)
    return value() if callable(value) else value


def prunable_names(model: nn.Module) -> list[str]:
    """`model.prunable_names` if defined, else `<module>.weight` of every Linear and Conv1d/2d/3d, in
    named_parameters order. Biases and BatchNorm are never prunable."""
    declared = _declared(model, "prunable_names")
    if declared is not None:
        return list(declared)
    # named_modules visits modules in the order named_parameters visits their parameters.
    return [f"{name}.weight" if name else "weight" for name, m in model.named_modules()
            if isinstance(m, PRUNABLE) and m.weight is not None]


def output_name(model: nn.Module) -> str:
    """`model.output_name` if defined, else the weight of the last nn.Linear; a network without one
    (fully convolutional) gets its last prunable weight."""
    declared = _declared(model, "output_name")
    if declared is not None:
        return str(declared)
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if linears:
        return f"{linears[-1]}.weight" if linears[-1] else "weight"
    names = prunable_names(model)
    if not names:
        raise ConfigError(f"{type(model).__name__} has no Linear or Conv layer, so no output layer")
    return names[-1]


def output_names(model: nn.Module) -> list[str]:
    """Every output layer, each pruned at the output rate: `model.output_names` where a network has several
    heads (an actor-critic's action and value heads), else [output_name(model)]."""
    declared = _declared(model, "output_names")
    return list(declared) if declared is not None else [output_name(model)]


def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    prefix, _, attr = name.rpartition(".")
    try:
        return (model.get_submodule(prefix) if prefix else model), attr
    except AttributeError as e:
        raise ConfigError(f"{type(model).__name__} has no parameter {name!r}") from e


def get_weight(model: nn.Module, name: str) -> torch.Tensor:
    """The tensor `name` refers to (also works where the attribute is a parametrization)."""
    module, attr = _owner(model, name)
    value = getattr(module, attr, None)
    if not isinstance(value, torch.Tensor):
        raise ConfigError(f"{type(model).__name__} has no parameter {name!r}")
    return value


def layer_kind(model: nn.Module, name: str) -> str:
    """The kind of layer that owns parameter `name`, for per-kind pruning rates and reports.

    The model's own `layer_kinds` mapping decides where it names `name` (a Transformer's q/k/v/out are
    nn.Linear but "attention"); otherwise the owner's type: 'conv', 'linear', 'embedding' (nn.Embedding),
    'recurrent' (nn.LSTM/GRU/RNN matrices) or 'attention' (nn.MultiheadAttention's packed projection)."""
    declared = _declared(model, "layer_kinds")
    if declared is not None and name in declared:
        return str(declared[name])
    module, _ = _owner(model, name)
    for types, kind in _KINDS:
        if isinstance(module, types):
            return kind
    raise ConfigError(f"parameter {name!r} belongs to a {type(module).__name__}, which is not a layer "
                     f"pruning knows ({', '.join(k for _, k in _KINDS)})")


def count_weights(model: nn.Module, names: Iterable[str] | None = None) -> int:
    """Number of elements of the prunable weights (or of `names`)."""
    names = prunable_names(model) if names is None else names
    return sum(get_weight(model, n).numel() for n in names)
