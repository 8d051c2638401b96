"""Datasets for lottery-ticket experiments, held whole in (device) memory.

`load_dataset` / `load` give a `Dataset` of normalized train/val/test `Split`s; `Batches` draws seeded,
resumable mini-batches from a split; `check_available` is the fast pre-flight check. Every problem a user
can fix is a `DataError` whose message says how.
"""

from .api import check_available, load, load_dataset
from .batches import Batches, augment_batch
from .core import DATA_DIR_HINT, DataError, Dataset, Split
from .idx import read_idx
from .locate import resolve_data_dir
from .registry import DATASETS, NORMALIZATION, DatasetInfo

__all__ = [
    "DATASETS",
    "DATA_DIR_HINT",
    "NORMALIZATION",
    "Batches",
    "DataError",
    "Dataset",
    "DatasetInfo",
    "Split",
    "augment_batch",
    "check_available",
    "load",
    "load_dataset",
    "read_idx",
    "resolve_data_dir",
]
