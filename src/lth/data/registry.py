"""What datasets exist: shapes, class counts, default validation sizes, normalization constants."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .core import DataError


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    input_shape: tuple[int, ...]
    default_val_size: int
    description: str
    task: str = "classify"
    """"classify" (y [N]: one class per example) or "lm" (language modelling: x token ids [N, T], y the next
    token at each position [N, T]; num_classes is the vocabulary size, 0 where the corpus decides it, and
    input_shape is (default context,); validation is a contiguous block of the text, so default_val_size is
    unused)."""


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in [
        DatasetInfo("mnist", 10, (1, 28, 28), 5000, "MNIST handwritten digits (IDX files)"),
        DatasetInfo("fashion_mnist", 10, (1, 28, 28), 5000, "Fashion-MNIST clothing images (IDX files)"),
        DatasetInfo("cifar10", 10, (3, 32, 32), 5000, "CIFAR-10 natural images (python pickle batches)"),
        DatasetInfo("cifar100", 100, (3, 32, 32), 5000, "CIFAR-100 natural images, fine labels"),
        DatasetInfo("mnist1d", 10, (40,), 500, "MNIST-1D, generated locally by the reference generator"),
        DatasetInfo("synthetic", 10, (1, 16, 16), 100, "tiny offline templates-plus-noise set for tests"),
        DatasetInfo("mnist1d_seq", 10, (40, 1), 500, "MNIST-1D as 40 steps of 1 value (mnist1d's examples and split)"),
        DatasetInfo("mnist_rows", 10, (28, 28), 5000, "row-sequential MNIST: 28 steps of 28 pixels (mnist's files)"),
        DatasetInfo("chars", 0, (64,), 0, "character-level LM on a text corpus (Debian fortunes-min, or corpus.txt)",
                    "lm"),
        DatasetInfo("chars_tiny", 23, (32,), 0, "tiny generated text for tests, character-level LM", "lm"),
    ]
}

# Per-channel (mean, std) of the training images scaled to [0, 1]: the usual published constants, so that
# numbers are comparable with other code bases (not recomputed from whatever subset is on disk).
NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def get_info(name: str) -> DatasetInfo:
    """Registry entry for `name` (case and '-' vs '_' forgiven); unknown names list the known ones."""
    key = name.strip().lower().replace("-", "_")
    if key not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    return DATASETS[key]


def normalize_images(images: np.ndarray, name: str) -> torch.Tensor:
    """uint8 [N, C, H, W] -> float32 in [0, 1], then per-channel (x - mean) / std."""
    mean, std = NORMALIZATION[name]
    x = torch.from_numpy(images).to(torch.float32).div_(255.0)
    shape = (1, len(mean), 1, 1)
    return x.sub_(torch.tensor(mean).view(shape)).div_(torch.tensor(std).view(shape))
