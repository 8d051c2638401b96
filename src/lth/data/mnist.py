"""MNIST and Fashion-MNIST from their four standard IDX files (gzipped or raw)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .core import DataError
from .idx import read_header, read_idx
from .locate import find_file, search_dirs
from .registry import normalize_images

FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


def find(name: str, data_dir: str | Path | None) -> dict[str, Path] | None:
    """The four files from the first searched folder that holds all of them (never a mix of folders)."""
    for folder in search_dirs(name, data_dir):
        paths = {key: find_file(folder, filename) for key, filename in FILES.items()}
        if all(p is not None for p in paths.values()):
            return paths  # type: ignore[return-value]
    return None


def _mismatch(images: Path, labels: Path, n_images: int, n_labels: int) -> DataError:
    return DataError(
        f"{images} holds {n_images} images but {labels} holds {n_labels} labels: the files do not belong "
        "together. Fix: delete both and download (or copy) a matching pair again."
    )


def check_headers(paths: dict[str, Path]) -> None:
    """Cheap pre-flight: magic numbers and image/label counts agree (reads only the headers)."""
    for part in ("train", "test"):
        images, labels = paths[f"{part}_images"], paths[f"{part}_labels"]
        n_images, n_labels = read_header(images)[0], read_header(labels)[0]
        if n_images != n_labels:
            raise _mismatch(images, labels, n_images, n_labels)


def _load_part(name: str, images_path: Path, labels_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise DataError(
            f"{images_path} holds {images.dtype} of shape {images.shape}, not 28x28 uint8 images. "
            "Fix: replace it with the standard file."
        )
    if labels.ndim != 1 or labels.dtype != np.uint8 or (labels.size and labels.max() > 9):
        raise DataError(f"{labels_path} does not hold labels 0-9. Fix: replace it with the standard file.")
    if len(images) != len(labels):
        raise _mismatch(images_path, labels_path, len(images), len(labels))
    x = normalize_images(images[:, None], name)
    return x, torch.from_numpy(labels.astype(np.int64))


def load(name: str, paths: dict[str, Path]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_test, y_test), normalized; counts come from the headers (subsets are fine)."""
    x_train, y_train = _load_part(name, paths["train_images"], paths["train_labels"])
    x_test, y_test = _load_part(name, paths["test_images"], paths["test_labels"])
    return x_train, y_train, x_test, y_test
