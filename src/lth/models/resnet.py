"""CIFAR ResNet-20/32/56 (He et al. 2016), as in OpenLTH's `cifar_resnet`.

A 3x3 stem conv, three stages of (depth - 2) / 6 basic blocks with `width`, 2x and 4x channels (default
16/32/64), global average pool and one fc layer. The first block of stages 2 and 3 halves the resolution;
where a block changes shape its shortcut is a 1x1 conv + BatchNorm named `shortcut` (so '*shortcut*'
excludes them from pruning, as Frankle & Carbin do). ResNet-20 has 270,896 conv+fc weights.
"""

from __future__ import annotations

import torch
from torch import nn

from .shapes import image_shape


class Block(nn.Module):
    """Basic residual block: conv-BN-ReLU-conv-BN, plus the shortcut, then ReLU."""

    def __init__(self, f_in: int, f_out: int, downsample: bool):
        super().__init__()
        stride = 2 if downsample else 1
        # No conv biases: each conv feeds a BatchNorm, whose shift makes a bias redundant.
        self.conv1 = nn.Conv2d(f_in, f_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(f_out)
        self.conv2 = nn.Conv2d(f_out, f_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(f_out)
        if downsample or f_in != f_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(f_in, f_out, 1, stride=stride, bias=False), nn.BatchNorm2d(f_out)
            )
        else:
            self.shortcut = nn.Sequential()  # identity, no parameters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """`conv`/`bn` stem, `blocks.0..` (flat, as in OpenLTH), `fc` output."""

    def __init__(self, in_channels: int, depth: int, num_classes: int, width: int = 16):
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n + 2, got {depth}")
        n = (depth - 2) // 6
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        blocks, f_in = [], width
        for stage, f_out in enumerate((width, 2 * width, 4 * width)):
            for b in range(n):
                blocks.append(Block(f_in, f_out, downsample=stage > 0 and b == 0))
                f_in = f_out
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(f_in, num_classes)

    @property
    def prunable_names(self) -> list[str]:
        # Every conv (shortcuts included) and fc: which of them to leave dense is the pruning config's call.
        return [name for name, p in self.named_parameters() if name.endswith("weight") and p.dim() > 1]

    @property
    def output_name(self) -> str:
        return "fc.weight"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x)))
        x = self.blocks(x)
        return self.fc(x.mean(dim=(2, 3)))


def _resnet_builder(name: str, depth: int):
    def build(input_shape: tuple[int, ...], num_classes: int, *, hidden: tuple[int, ...] = (),
              width: int = 0, dropout: float = 0.0) -> ResNet:
        c, _, _ = image_shape(name, input_shape)
        return ResNet(c, depth, num_classes, width or 16)

    return build


build_resnet20 = _resnet_builder("resnet20", 20)
build_resnet32 = _resnet_builder("resnet32", 32)
build_resnet56 = _resnet_builder("resnet56", 56)
