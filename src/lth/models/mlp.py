"""Fully connected networks: LeNet-300-100 (Frankle & Carbin) and the MNIST-1D lottery MLP (40-500-500-10)."""

from __future__ import annotations

import torch
from torch import nn

from .shapes import flat_features


class MLP(nn.Module):
    """Flatten, then fc1 .. fcN with ReLU between; `fc{N}` is the output layer.

    Dropout, when on, acts on the hidden activations (the input of every fc layer after the first), as in
    Srivastava et al.; dropping raw input pixels at the paper's 0.5 rate is not what "dropout" meant there.
    """

    def __init__(self, in_features: int, hidden: tuple[int, ...], num_classes: int, dropout: float = 0.0):
        super().__init__()
        widths = (in_features, *hidden, num_classes)
        self.depth = len(widths) - 1
        for i in range(self.depth):
            # Named fc1, fc2, ... (not a Sequential's 0, 2, 4) so masks and reports read naturally.
            setattr(self, f"fc{i + 1}", nn.Linear(widths[i], widths[i + 1]))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    @property
    def prunable_names(self) -> list[str]:
        return [f"fc{i + 1}.weight" for i in range(self.depth)]

    @property
    def output_name(self) -> str:
        return f"fc{self.depth}.weight"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        # Layers are looked up by name each call (not cached in a list) so that code which swaps a layer
        # for a subclass (e.g. a masked or edge-popup linear) is honoured.
        for i in range(self.depth):
            if i > 0:
                x = self.dropout(torch.relu(x))
            x = getattr(self, f"fc{i + 1}")(x)
        return x


def _mlp_builder(name: str, default_hidden: tuple[int, ...]):
    def build(input_shape: tuple[int, ...], num_classes: int, *, hidden: tuple[int, ...] = (),
              width: int = 0, dropout: float = 0.0) -> MLP:
        return MLP(flat_features(name, input_shape), tuple(hidden) or default_hidden, num_classes, dropout)

    return build


build_lenet_300_100 = _mlp_builder("lenet_300_100", (300, 100))
build_mnist1d_mlp = _mlp_builder("mnist1d_mlp", (500, 500))
