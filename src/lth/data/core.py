"""The data containers every other subpackage codes against, and the one error type users see."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lth.errors import UserError

# How the CLI and the environment let a user point at their files; named here once so that every message
# gives the same fix.
DATA_DIR_HINT = "`--data-dir` (or the LTH_DATA environment variable)"


class DataError(UserError, RuntimeError):
    """A data problem the user can fix; the message says what is wrong and how to fix it."""


@dataclass
class Split:
    """One split, already normalized: x float32 [N, *input_shape], y int64 [N]. Language modelling: x int64
    token ids [N, T], y int64 [N, T] (the next token at every position)."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise DataError(
                f"split has {self.x.shape[0]} inputs but {self.y.shape[0]} labels; the data files disagree, "
                "delete them and download (or copy) them again"
            )

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device: torch.device | str) -> Split:
        return Split(self.x.to(device), self.y.to(device))


@dataclass
class Dataset:
    """A dataset resident in memory (on one device): train/val/test splits and what models need to know.

    For language modelling (task "lm") num_classes is the vocabulary size, input_shape is (context,) and
    `vocab` holds the characters: token id i is vocab[i]."""

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    input_shape: tuple[int, ...]
    task: str = "classify"
    vocab: str = ""

    def to(self, device: torch.device | str) -> Dataset:
        return Dataset(
            self.name,
            self.train.to(device),
            self.val.to(device),
            self.test.to(device),
            self.num_classes,
            self.input_shape,
            self.task,
            self.vocab,
        )
