"""Conv-2, Conv-4 and Conv-6 of Frankle & Carbin (2019): VGG-like nets for CIFAR-10.

3x3 convolutions with padding 1 in pairs of (64), (128), (256) channels, each pair followed by a 2x2 max
pool, then fully connected 256, 256 and the output. On (3, 32, 32) this gives exactly the facts sheet's
weight counts (Conv-2 4,300,992; Conv-4 2,425,024; Conv-6 2,261,184). On Fashion-MNIST's (1, 28, 28) the pools
take 28 to 14, 7 and 3 (each floors), which gives Conv-2 3,316,800, Conv-4 1,932,352 and Conv-6 1,801,280
weights (tests/test_ticket_studies.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .shapes import image_shape

_FC_WIDTHS = (256, 256)


class ConvNet(nn.Module):
    """conv1 .. conv{2k} (a max pool after every second one), then fc1, fc2, fc3 (output).

    Dropout, when on, acts on the input of every fc layer (the flattened features and both hidden
    activations), as in the paper's dropout experiments on these networks.
    """

    def __init__(self, input_shape: tuple[int, int, int], stages: tuple[int, ...], num_classes: int,
                 dropout: float = 0.0):
        super().__init__()
        c, h, w = input_shape
        self.num_convs = 2 * len(stages)
        channels = [c] + [s for s in stages for _ in range(2)]
        for i in range(self.num_convs):
            setattr(self, f"conv{i + 1}", nn.Conv2d(channels[i], channels[i + 1], 3, padding=1))
        h, w = h >> len(stages), w >> len(stages)  # each 2x2 max pool floors the size in half
        widths = (channels[-1] * h * w, *_FC_WIDTHS, num_classes)
        for i in range(3):
            setattr(self, f"fc{i + 1}", nn.Linear(widths[i], widths[i + 1]))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    @property
    def prunable_names(self) -> list[str]:
        return [f"conv{i + 1}.weight" for i in range(self.num_convs)] + [f"fc{i}.weight" for i in (1, 2, 3)]

    @property
    def output_name(self) -> str:
        return "fc3.weight"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.num_convs):
            x = torch.relu(getattr(self, f"conv{i + 1}")(x))
            if i % 2 == 1:
                x = F.max_pool2d(x, 2)
        x = self.fc1(self.dropout(x.flatten(1)))
        x = self.fc2(self.dropout(torch.relu(x)))
        return self.fc3(self.dropout(torch.relu(x)))


def _conv_builder(name: str, stages: tuple[int, ...]):
    def build(input_shape: tuple[int, ...], num_classes: int, *, hidden: tuple[int, ...] = (),
              width: int = 0, dropout: float = 0.0) -> ConvNet:
        shape = image_shape(name, input_shape, min_size=2 ** len(stages))
        return ConvNet(shape, stages, num_classes, dropout)

    return build


build_conv2 = _conv_builder("conv2", (64,))
build_conv4 = _conv_builder("conv4", (64, 128))
build_conv6 = _conv_builder("conv6", (64, 128, 256))
