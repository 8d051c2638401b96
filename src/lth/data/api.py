"""Entry points: pre-flight check, loading (locate -> download if allowed -> parse -> split -> device)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from . import cifar, mnist, mnist1d, synthetic
from . import download as dl
from .core import DataError, Dataset, Split
from .locate import dataset_dir, find_file, missing_files_error, search_dirs
from .registry import get_info
from .splits import train_val_split

if TYPE_CHECKING:
    from lth.config import DataConfig

_IDX = ("mnist", "fashion_mnist")
_CIFAR = ("cifar10", "cifar100")
_LABELS = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}


def _find(name: str, data_dir: str | Path | None) -> dict[str, Path] | Path | None:
    return mnist.find(name, data_dir) if name in _IDX else cifar.find(name, data_dir)


def _required(name: str) -> list[str]:
    if name in _IDX:
        return list(mnist.FILES.values())
    layout = cifar.LAYOUTS[name]
    return [layout.archive]


def _missing(name: str, data_dir: str | Path | None, download: bool) -> DataError:
    files = _required(name)
    if name in _CIFAR:
        files = [f"{files[0]} (or its extracted folder {cifar.LAYOUTS[name].folder}/)"]
    return missing_files_error(
        _LABELS[name], files, search_dirs(name, data_dir), dataset_dir(name, data_dir), download
    )


def check_available(name: str, data_dir: str | Path | None = None, download: bool = True) -> None:
    """Fast pre-flight check before any training: never downloads, never parses whole files.

    Unknown names, missing files with download=False, and IDX headers that disagree raise a DataError.
    """
    name = get_info(name).name
    if name == "synthetic":
        return
    if name == "mnist1d":
        if importlib.util.find_spec("mnist1d") is None:
            raise DataError("MNIST-1D needs the `mnist1d` package. Fix: pip install mnist1d")
        return
    found = _find(name, data_dir)
    if found is None:
        if not download:
            raise _missing(name, data_dir, download)
        return
    if isinstance(found, dict):
        mnist.check_headers(found)


def _load_files(
    name: str, data_dir: str | Path | None, download: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    found = _find(name, data_dir)
    if found is None:
        if not download:
            raise _missing(name, data_dir, download)
        target = dataset_dir(name, data_dir)
        # Files already in the target folder (an earlier, interrupted download) are kept, not fetched again.
        dl.download(name, [f for f in _required(name) if find_file(target, f) is None], target)
        found = _find(name, data_dir)
        if found is None:  # only if the downloaded files vanished or are unusable
            raise _missing(name, data_dir, download)
    return mnist.load(name, found) if isinstance(found, dict) else cifar.load(name, found)


def load_dataset(
    name: str,
    *,
    data_dir: str | Path | None = None,
    val_size: int | None = None,
    split_seed: int = 0,
    device: torch.device | str = "cpu",
    download: bool = True,
) -> Dataset:
    """Load `name` normalized, with a seeded validation split carved from its training set, on `device`."""
    info = get_info(name)
    if info.name == "synthetic":
        x, y, x_test, y_test = synthetic.load()
    elif info.name == "mnist1d":
        x, y, x_test, y_test = mnist1d.load(dataset_dir("mnist1d", data_dir))
    else:
        x, y, x_test, y_test = _load_files(info.name, data_dir, download)
    val_size = info.default_val_size if val_size is None else val_size
    train, val = train_val_split(x, y, val_size, split_seed)
    ds = Dataset(info.name, train, val, Split(x_test, y_test), info.num_classes, info.input_shape)
    return ds.to(device)


def load(cfg: DataConfig, device: torch.device | str = "cpu") -> Dataset:
    """load_dataset driven by the experiment config's data section."""
    return load_dataset(
        cfg.dataset,
        data_dir=cfg.data_dir,
        val_size=cfg.val_size,
        split_seed=cfg.split_seed,
        device=device,
        download=cfg.download,
    )
