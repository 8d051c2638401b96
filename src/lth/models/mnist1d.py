"""The MNIST-1D reference CNN (`ConvBase` in Greydanus' mnist1d repo; ~94% test accuracy).

Three 1-D convs of 25 channels (kernel 5 stride 2, then two kernel 3 stride 2, all padding 1) with ReLU,
flattened into one linear layer. On length 40 the map shrinks 40 -> 19 -> 10 -> 5, so fc sees 125 features.
The MLP of the MNIST-1D lottery experiment (40-500-500-10) lives in mlp.py.
"""

from __future__ import annotations

import torch
from torch import nn

from .shapes import signal_shape

_CHANNELS = 25
_LAYERS = ((5, 2, 1), (3, 2, 1), (3, 2, 1))  # (kernel, stride, padding)


def _out_length(length: int) -> int:
    for k, s, p in _LAYERS:
        length = (length + 2 * p - k) // s + 1
    return length


class MNIST1DCNN(nn.Module):
    """conv1, conv2, conv3, fc. Takes [N, L] (a channel is added) or [N, C, L]."""

    def __init__(self, in_channels: int, length: int, num_classes: int, channels: int = _CHANNELS):
        super().__init__()
        c = in_channels
        for i, (k, s, p) in enumerate(_LAYERS):
            setattr(self, f"conv{i + 1}", nn.Conv1d(c, channels, k, stride=s, padding=p))
            c = channels
        self.fc = nn.Linear(channels * _out_length(length), num_classes)

    @property
    def prunable_names(self) -> list[str]:
        return ["conv1.weight", "conv2.weight", "conv3.weight", "fc.weight"]

    @property
    def output_name(self) -> str:
        return "fc.weight"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(1)
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = torch.relu(self.conv3(x))
        return self.fc(x.flatten(1))


def build_mnist1d_cnn(input_shape: tuple[int, ...], num_classes: int, *, hidden: tuple[int, ...] = (),
                      width: int = 0, dropout: float = 0.0) -> MNIST1DCNN:
    # Length 3 is the shortest signal that keeps at least one position after three stride-2 convs.
    c, length = signal_shape("mnist1d_cnn", input_shape, min_length=3)
    return MNIST1DCNN(c, length, num_classes)
