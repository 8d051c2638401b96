"""Carving the validation split out of the training set (the test set is never touched)."""

from __future__ import annotations

import operator

import torch

from .core import DataError, Split


def train_val_split(x: torch.Tensor, y: torch.Tensor, val_size: int, seed: int) -> tuple[Split, Split]:
    """A seeded random `val_size` examples become validation; both parts keep the original order."""
    n = len(y)
    try:
        size = operator.index(val_size)  # ints and numpy ints, never a silently truncated float
    except TypeError:
        size = -1
    if isinstance(val_size, bool) or not 0 <= size < n:
        raise DataError(
            f"val_size={val_size!r} is invalid for a training set of {n} examples. "
            f"Fix: hold out fewer than {n} examples (--data.val_size; or leave it unset for the dataset's default)."
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_idx, _ = perm[:size].sort()
    train_idx, _ = perm[size:].sort()
    return Split(x[train_idx], y[train_idx]), Split(x[val_idx], y[val_idx])
