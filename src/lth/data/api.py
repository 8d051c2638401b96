"""Entry points: pre-flight check, loading (locate -> download if allowed -> parse -> split -> device)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from . import cifar, mnist, mnist1d, synthetic, text
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
# Datasets that read another dataset's examples as sequences (x reshaped to their input_shape): the same
# files, cache and split, so a sequence model and an image model see the same train/val/test examples.
SEQUENCE_VIEWS = {"mnist_rows": "mnist", "mnist1d_seq": "mnist1d"}


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
    info = get_info(name)
    if info.task == "lm":
        if info.name == "chars" and text.find_corpus(data_dir) is None:
            raise text.missing_corpus_error(data_dir)
        return
    name = SEQUENCE_VIEWS.get(info.name, info.name)
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
    context: int = 0,
) -> Dataset:
    """Load `name` normalized, with a seeded validation split carved from its training set, on `device`.

    Language-modelling datasets (task "lm") are split by contiguous blocks of text instead (lth.data.text),
    into examples of `context` characters (0: the dataset's default)."""
    info = get_info(name)
    if info.task == "lm":
        return _load_text(info.name, data_dir, val_size, context or info.input_shape[0]).to(device)
    if context:
        raise DataError(f"context={context} applies to language-modelling datasets (chars, chars_tiny), not "
                        f"{info.name!r}. Fix: leave --data.context at 0.")
    source = SEQUENCE_VIEWS.get(info.name, info.name)
    if source == "synthetic":
        x, y, x_test, y_test = synthetic.load()
    elif source == "mnist1d":
        x, y, x_test, y_test = mnist1d.load(dataset_dir("mnist1d", data_dir))
    else:
        x, y, x_test, y_test = _load_files(source, data_dir, download)
    if source != info.name:
        x, x_test = x.reshape(len(x), *info.input_shape), x_test.reshape(len(x_test), *info.input_shape)
    val_size = info.default_val_size if val_size is None else val_size
    train, val = train_val_split(x, y, val_size, split_seed)
    ds = Dataset(info.name, train, val, Split(x_test, y_test), info.num_classes, info.input_shape)
    return ds.to(device)


def _load_text(name: str, data_dir: str | Path | None, val_size: int | None, context: int) -> Dataset:
    if val_size is not None:
        raise DataError(f"val_size={val_size} does not apply to {name!r}: its validation split is a fixed "
                        f"contiguous {text.SPLIT_PERCENT[1]}% block of the text. Fix: leave val_size unset.")
    corpus, source = text.load(name, data_dir)
    train, val, test, vocab = text.make_splits(corpus, context, source)
    return Dataset(name, train, val, test, len(vocab), (context,), task="lm", vocab=vocab)


def load(cfg: DataConfig, device: torch.device | str = "cpu") -> Dataset:
    """load_dataset driven by the experiment config's data section."""
    return load_dataset(
        cfg.dataset,
        data_dir=cfg.data_dir,
        val_size=cfg.val_size,
        split_seed=cfg.split_seed,
        device=device,
        download=cfg.download,
        context=cfg.context,
    )
