"""Seeded, resumable mini-batches drawn on the device, with batched crop-and-flip augmentation."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .core import DataError, Split

PAD = 4  # the standard CIFAR augmentation: 4-pixel zero padding, random 32x32 crop, horizontal flip


def augment_batch(x: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor, pad: int = PAD) -> torch.Tensor:
    """Zero-pad x [B, C, H, W] by `pad`, crop H x W at (row, col) = shifts[b] in [0, 2 * pad], and mirror
    horizontally where flips[b]: out[b, c, i, j] = padded[b, c, i + r_b, c_b + (W - 1 - j if flip else j)].

    One gather over index grids, no per-sample Python work.
    """
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    shifts = shifts.to(device=x.device, dtype=torch.long)
    flips = flips.to(device=x.device, dtype=torch.bool)
    i = torch.arange(h, device=x.device)
    j = torch.arange(w, device=x.device)
    rows = shifts[:, 0, None] + i  # [B, H]
    cols = shifts[:, 1, None] + torch.where(flips[:, None], w - 1 - j, j)  # [B, W]
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]


def _epoch_seed(seed: int, epoch: int) -> int:
    # SeedSequence mixes (seed, epoch) into well-separated streams; a sum like seed * K + epoch would make
    # different (seed, epoch) pairs collide.
    state = np.random.SeedSequence([seed & 0xFFFFFFFFFFFFFFFF, epoch]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 32 | int(state[1])


class Batches:
    """get(step) is a pure function of (seed, step), so resuming at any step reproduces the same batches.

    epoch = step // steps_per_epoch; the epoch's permutation (and augmentation draws) come from a CPU
    generator seeded from (seed, epoch), moved to the split's device once and cached. The last partial
    batch is dropped: steps_per_epoch = len(split) // batch_size.
    """

    def __init__(self, split: Split, batch_size: int, seed: int, augment: bool = False) -> None:
        n = len(split)
        if batch_size < 1 or batch_size > n:
            raise DataError(
                f"batch_size={batch_size} does not fit a split of {n} examples. "
                f"Fix: use a batch size from 1 to {n} (or a smaller validation set)."
            )
        if augment and split.x.ndim != 4:
            raise DataError(
                "augmentation (random crop and flip) needs image inputs [N, C, H, W], got "
                f"{tuple(split.x.shape)}. Fix: turn augmentation off for this dataset."
            )
        self.split, self.batch_size, self.seed, self.augment = split, batch_size, seed, augment
        self.steps_per_epoch = n // batch_size
        self._epoch = -1
        self._perm = self._shifts = self._flips = torch.empty(0)

    def _load_epoch(self, epoch: int) -> None:
        n, device = len(self.split), self.split.x.device
        g = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch))
        self._perm = torch.randperm(n, generator=g).to(device)
        if self.augment:  # per position in the epoch's order, drawn after the permutation
            self._shifts = torch.randint(0, 2 * PAD + 1, (n, 2), generator=g).to(device)
            self._flips = (torch.randint(0, 2, (n,), generator=g) == 1).to(device)
        self._epoch = epoch

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        epoch, i = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self._load_epoch(epoch)
        sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
        idx = self._perm[sl]
        x, y = self.split.x.index_select(0, idx), self.split.y.index_select(0, idx)
        if self.augment:
            x = augment_batch(x, self._shifts[sl], self._flips[sl])
        return x, y
