"""CIFAR VGG-11/16/19 with BatchNorm, as in OpenLTH's `cifar_vgg`.

Every 3x3 conv is followed by BatchNorm and ReLU; 'M' is a 2x2 max pool. After the last block a global
average pool leaves 512 features for a single fc layer. OpenLTH pools with AvgPool2d(2), which is the same
thing on 32x32 input (the map is 2x2 there); the global pool also accepts other image sizes.
VGG-19 on (3, 32, 32) has 20,024,000 conv+fc weights (facts sheet).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .shapes import image_shape

PLANS: dict[str, tuple[int | str, ...]] = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512),
}


class VGG(nn.Module):
    """conv{i} + bn{i} for every conv of the plan, then `fc` (the output layer)."""

    def __init__(self, in_channels: int, plan: tuple[int | str, ...], num_classes: int):
        super().__init__()
        self.plan = plan
        self.num_convs = sum(1 for p in plan if p != "M")
        c, i = in_channels, 0
        for p in plan:
            if p == "M":
                continue
            i += 1
            setattr(self, f"conv{i}", nn.Conv2d(c, int(p), 3, padding=1))
            setattr(self, f"bn{i}", nn.BatchNorm2d(int(p)))
            c = int(p)
        self.fc = nn.Linear(c, num_classes)

    @property
    def prunable_names(self) -> list[str]:
        return [f"conv{i + 1}.weight" for i in range(self.num_convs)] + ["fc.weight"]

    @property
    def output_name(self) -> str:
        return "fc.weight"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        i = 0
        for p in self.plan:
            if p == "M":
                x = F.max_pool2d(x, 2)
            else:
                i += 1
                x = torch.relu(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x)))
        return self.fc(x.mean(dim=(2, 3)))


def _vgg_builder(name: str):
    plan = PLANS[name]

    def build(input_shape: tuple[int, ...], num_classes: int, *, hidden: tuple[int, ...] = (),
              width: int = 0, dropout: float = 0.0) -> VGG:
        c, _, _ = image_shape(name, input_shape, min_size=2 ** plan.count("M"))
        return VGG(c, plan, num_classes)

    return build


build_vgg11 = _vgg_builder("vgg11")
build_vgg16 = _vgg_builder("vgg16")
build_vgg19 = _vgg_builder("vgg19")
