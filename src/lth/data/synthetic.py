"""A tiny, offline, deterministic and learnable dataset for tests: class templates plus noise."""

from __future__ import annotations

import torch

NUM_CLASSES, SHAPE, N_TRAIN, N_TEST = 10, (1, 16, 16), 600, 200
SEED, NOISE = 1234, 1.5


def load() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_test, y_test): x = template[y] + NOISE * N(0, 1), scaled to unit variance.

    Noise this strong keeps single examples ambiguous to the eye, yet the class means are far apart in
    256 dimensions, so a small MLP gets well above chance (1/10) within a few hundred steps.
    """
    g = torch.Generator().manual_seed(SEED)
    templates = torch.randn(NUM_CLASSES, *SHAPE, generator=g)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % NUM_CLASSES  # balanced classes
        y = y[torch.randperm(n, generator=g)]
        x = templates[y] + NOISE * torch.randn(n, *SHAPE, generator=g)
        return x / (1 + NOISE**2) ** 0.5, y

    x_train, y_train = draw(N_TRAIN)
    x_test, y_test = draw(N_TEST)
    return x_train, y_train, x_test, y_test
