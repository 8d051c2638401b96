"""CIFAR-10/100 in the standard "python version" format: pickled batches, as a folder or the .tar.gz."""

from __future__ import annotations

import io
import pickle
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lth.errors import UserError
from lth.fileio import write_bytes

from .core import DataError
from .locate import is_data_file, search_dirs
from .registry import DATASETS, normalize_images


@dataclass(frozen=True)
class Layout:
    archive: str
    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    label_key: bytes

    @property
    def members(self) -> tuple[str, ...]:
        return self.train + self.test


LAYOUTS: dict[str, Layout] = {
    "cifar10": Layout(
        "cifar-10-python.tar.gz",
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
        b"labels",
    ),
    "cifar100": Layout("cifar-100-python.tar.gz", "cifar-100-python", ("train",), ("test",), b"fine_labels"),
}


def find(name: str, data_dir: str | Path | None) -> Path | None:
    """An extracted folder holding every batch file (preferred: no decompression), else the archive."""
    layout = LAYOUTS[name]
    dirs = search_dirs(name, data_dir)
    for d in dirs:
        for folder in (d / layout.folder, d):
            if all([is_data_file(folder / m) for m in layout.members]):
                return folder
    for d in dirs:
        if is_data_file(d / layout.archive):
            return d / layout.archive
    return None


def _damaged(path: Path | str, problem: str) -> DataError:
    return DataError(f"{path} is damaged ({problem}). Fix: delete it and download it again (or re-copy it).")


def _read_archive(archive: Path, layout: Layout) -> dict[str, bytes]:
    """The batch files from the archive, and a best-effort extraction next to it for next time.

    Only the known member names are read, and only if they are regular files, so a hostile archive cannot
    write outside the folder (no links, no absolute or '..' paths are ever followed).
    """
    blobs: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for m in layout.members:
                info = tar.getmember(f"{layout.folder}/{m}")
                f = tar.extractfile(info) if info.isfile() else None
                if f is None:
                    raise KeyError(m)
                blobs[m] = f.read()
    except KeyError as e:
        raise DataError(
            f"{archive} does not hold {layout.folder}/{e.args[0]}: it is not the standard archive. "
            "Fix: delete it and download it again."
        ) from e
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise _damaged(archive, f"cannot read the archive: {e}") from e
    target = archive.parent / layout.folder
    try:  # a cache only: a read-only folder or a full disk just means reading the archive again next time
        for m, blob in blobs.items():
            write_bytes(target / m, blob)  # atomic per file: a crash never leaves a half-written batch
    except (OSError, UserError):
        pass
    return blobs


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds numpy arrays and plain containers and nothing else (no code execution)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(0))[0],
        ("numpy._core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(0))[0],
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): __import__("codecs").encode,
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name}") from None


def _parse(blob: bytes, source: str, label_key: bytes, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _NumpyOnlyUnpickler(io.BytesIO(blob), encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, IndexError) as e:
        raise _damaged(source, f"not a readable CIFAR batch: {e!r}") from e
    if data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (len(data),):
        raise _damaged(source, f"data {data.shape} and labels {labels.shape} are not [N, 3072] and [N]")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise _damaged(source, f"labels outside 0..{num_classes - 1}")
    return data, labels


def load(name: str, source: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_test, y_test) from an extracted folder or the .tar.gz, normalized."""
    layout = LAYOUTS[name]
    if source.is_dir():
        blobs = {m: (source / m).read_bytes() for m in layout.members}
        where = {m: str(source / m) for m in layout.members}
    else:
        blobs = _read_archive(source, layout)
        where = {m: f"{source}:{layout.folder}/{m}" for m in layout.members}
    num_classes = DATASETS[name].num_classes

    def part(members: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        parsed = [_parse(blobs.pop(m), where[m], layout.label_key, num_classes) for m in members]
        data = np.concatenate([p[0] for p in parsed])
        # Each row is 1024 red, then green, then blue values, each plane row-major: i.e. [3, 32, 32].
        x = normalize_images(data.reshape(-1, 3, 32, 32), name)
        return x, torch.from_numpy(np.concatenate([p[1] for p in parsed]))

    x_train, y_train = part(layout.train)
    x_test, y_test = part(layout.test)
    return x_train, y_train, x_test, y_test
