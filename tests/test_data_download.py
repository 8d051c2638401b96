"""lth.data downloads, offline: urlopen is replaced by fakes (unreachable host, wrong bytes, right bytes)."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import tarfile
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest

import lth.data.download as dl
from lth.data import DataError, load_dataset
from lth.data.locate import SYSTEM_DIRS

FILES = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
]


def idx_gz(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return gzip.compress(header + arr.astype(np.uint8).tobytes())


def tiny_mnist_blobs() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    return {
        FILES[0]: idx_gz(rng.integers(0, 256, (30, 28, 28))),
        FILES[1]: idx_gz(rng.integers(0, 10, 30)),
        FILES[2]: idx_gz(rng.integers(0, 256, (8, 28, 28))),
        FILES[3]: idx_gz(rng.integers(0, 10, 8)),
    }


def serve(monkeypatch, blobs: dict[str, bytes]) -> list[str]:
    """Fake urlopen serving `blobs` by file name; returns the list of URLs requested."""
    calls: list[str] = []

    def fake_urlopen(request, timeout=None):
        url = request.full_url if hasattr(request, "full_url") else request
        calls.append(url)
        assert timeout is not None and timeout <= 30
        return io.BytesIO(blobs[url.rsplit("/", 1)[1]])

    monkeypatch.setattr(dl, "urlopen", fake_urlopen)
    return calls


def patch_md5(monkeypatch, name: str, blobs: dict[str, bytes]) -> None:
    md5 = {f: hashlib.md5(blob).hexdigest() for f, blob in blobs.items()}
    table = [dl.Resource(r.filename, md5[r.filename], r.urls) for r in dl.RESOURCES[name]]
    monkeypatch.setitem(dl.RESOURCES, name, table)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_offline_fails_at_once_with_files_url_folder_and_fix(tmp_path, monkeypatch):
    calls: list[str] = []

    def unreachable(request, timeout=None):
        calls.append(request.full_url)
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(dl, "urlopen", unreachable)
    with pytest.raises(DataError) as e:
        load_dataset("mnist", data_dir=tmp_path)
    msg = str(e.value)
    assert len(calls) == len(dl.RESOURCES["mnist"][0].urls)  # each mirror once, for the first file only
    assert all(f in msg for f in FILES) and calls[0] in msg
    assert str(tmp_path / "mnist") in msg and "--data-dir" in msg and "LTH_DATA" in msg
    assert leftovers(tmp_path / "mnist") == []


def test_checksum_mismatch_keeps_nothing(tmp_path, monkeypatch):
    serve(monkeypatch, {f: b"not the real file" for f in FILES})
    with pytest.raises(DataError, match="checksum"):
        load_dataset("mnist", data_dir=tmp_path)
    assert leftovers(tmp_path / "mnist") == []  # neither the file nor a temp file


def test_verified_download_then_load(tmp_path, monkeypatch):
    monkeypatch.setitem(SYSTEM_DIRS, "fashion_mnist", [])  # as on a machine without Debian's copy
    blobs = tiny_mnist_blobs()
    patch_md5(monkeypatch, "fashion_mnist", blobs)
    calls = serve(monkeypatch, blobs)
    ds = load_dataset("fashion_mnist", data_dir=tmp_path, val_size=10)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (20, 10, 8)
    assert leftovers(tmp_path / "fashion_mnist") == sorted(FILES)
    assert (tmp_path / "fashion_mnist" / FILES[0]).stat().st_mode & 0o444 == 0o444  # readable by all
    assert len(calls) == 4
    load_dataset("fashion_mnist", data_dir=tmp_path, val_size=10)  # second time: from disk
    assert len(calls) == 4


def test_only_missing_files_are_fetched(tmp_path, monkeypatch):
    blobs = tiny_mnist_blobs()
    patch_md5(monkeypatch, "mnist", blobs)
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / FILES[1]).write_bytes(blobs[FILES[1]])
    calls = serve(monkeypatch, blobs)
    load_dataset("mnist", data_dir=tmp_path, val_size=10)
    assert sorted(c.rsplit("/", 1)[1] for c in calls) == sorted(FILES[:1] + FILES[2:])


def test_cifar10_download_extract_load(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    src = tmp_path / "src" / "cifar-10-batches-py"
    src.mkdir(parents=True)
    for n in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), b"labels": [1, 2]}
        (src / n).write_bytes(pickle.dumps(batch, protocol=2))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(src, arcname=src.name)
    blobs = {"cifar-10-python.tar.gz": buf.getvalue()}
    patch_md5(monkeypatch, "cifar10", blobs)
    serve(monkeypatch, blobs)
    ds = load_dataset("cifar10", data_dir=tmp_path / "data", val_size=2)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (8, 2, 2)
    assert (tmp_path / "data" / "cifar10" / "cifar-10-batches-py" / "test_batch").is_file()
