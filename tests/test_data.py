"""lth.data: loaders against real and hand-written files, splits, batches and augmentation."""

from __future__ import annotations

import gzip
import os
import pickle
import random
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

import lth.data as data
from lth.config import DataConfig
from lth.data import (
    Batches,
    DataError,
    Split,
    augment_batch,
    check_available,
    load_dataset,
)
from lth.data.locate import SYSTEM_DIRS

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
MNIST_FILES = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]


def idx_bytes(arr: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array, written independently of the reader under test."""
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def write_idx(path: Path, arr: np.ndarray) -> Path:
    blob = idx_bytes(arr)
    path.write_bytes(gzip.compress(blob) if path.suffix == ".gz" else blob)
    return path


def write_tiny_mnist(folder: Path, n_train: int = 50, n_test: int = 20, gz: bool = True, seed: int = 0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, arr in arrays.items():
        write_idx(folder / (name + (".gz" if gz else "")), arr)
    return arrays


def denormalize(x: torch.Tensor, name: str) -> np.ndarray:
    mean, std = data.NORMALIZATION[name]
    shape = (1, len(mean), 1, 1)
    pixels = (x * torch.tensor(std).view(shape) + torch.tensor(mean).view(shape)) * 255
    return pixels.round().to(torch.uint8).numpy()


# ---------------------------------------------------------------------------------------------------- MNIST


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="shared MNIST folder absent")
def test_real_mnist_counts_come_from_headers():
    check_available("mnist", data_dir=SHARED_MNIST, download=False)
    ds = load_dataset("mnist", data_dir=SHARED_MNIST, download=False)
    assert len(ds.train) + len(ds.val) == 22_699  # the header's count, not 60,000
    assert (len(ds.train), len(ds.val), len(ds.test)) == (17_699, 5000, 10_000)
    assert ds.train.x.shape == (17_699, 1, 28, 28) and ds.input_shape == (1, 28, 28)
    assert ds.train.x.dtype == torch.float32 and ds.train.y.dtype == torch.int64
    assert ds.num_classes == 10 and set(ds.test.y.tolist()) == set(range(10))
    assert abs(ds.train.x.mean().item()) < 0.05 and abs(ds.train.x.std().item() - 1) < 0.05
    assert ds.test.y[:5].tolist() == [7, 2, 1, 0, 4]  # the well-known first test labels


def test_tiny_idx_round_trip_raw_names_in_subfolder(tmp_path):
    arrays = write_tiny_mnist(tmp_path / "mnist", gz=False)
    ds = load_dataset("mnist", data_dir=tmp_path, val_size=10, download=False)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (40, 10, 20)
    np.testing.assert_array_equal(denormalize(ds.test.x, "mnist")[:, 0], arrays["t10k-images-idx3-ubyte"])
    assert ds.test.y.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    # train + val is exactly the training file (as multisets of (image, label) rows)
    x = torch.cat([ds.train.x, ds.val.x])
    got = sorted(map(bytes, denormalize(x, "mnist").reshape(50, -1)))
    assert got == sorted(map(bytes, arrays["train-images-idx3-ubyte"].reshape(50, -1)))


def test_read_idx_matches_written_array(tmp_path):
    arr = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    np.testing.assert_array_equal(data.read_idx(write_idx(tmp_path / "a.gz", arr)), arr)
    np.testing.assert_array_equal(data.read_idx(write_idx(tmp_path / "a", arr)), arr)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_idx_is_a_data_error_naming_the_file(tmp_path, gz):
    write_tiny_mnist(tmp_path, gz=gz)
    victim = tmp_path / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    blob = victim.read_bytes()
    victim.write_bytes(blob[: len(blob) - 100])
    with pytest.raises(DataError, match="train-images-idx3-ubyte") as e:
        load_dataset("mnist", data_dir=tmp_path, val_size=5, download=False)
    assert "download it again" in str(e.value)


def test_idx_with_extra_bytes_or_bad_magic_is_rejected(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(idx_bytes(np.zeros((3, 2), np.uint8)) + b"\0")
    with pytest.raises(DataError, match="payload"):
        data.read_idx(path)
    path.write_bytes(b"\x01\x02\x03\x04" + bytes(20))
    with pytest.raises(DataError, match="magic"):
        data.read_idx(path)


def test_image_label_count_mismatch(tmp_path):
    write_tiny_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(19, np.uint8))
    with pytest.raises(DataError, match="do not belong together"):
        check_available("mnist", data_dir=tmp_path, download=False)  # caught from the headers alone
    with pytest.raises(DataError, match="do not belong together"):
        load_dataset("mnist", data_dir=tmp_path, val_size=5, download=False)


def test_missing_files_name_files_folders_and_fix(tmp_path, monkeypatch):
    # Where Debian's dataset-fashion-mnist would be; kept empty so the test holds where it is installed.
    debian = tmp_path / "usr-share-datasets-fashion-mnist"
    monkeypatch.setitem(SYSTEM_DIRS, "fashion_mnist", [debian])
    for call in (
        lambda: check_available("fashion_mnist", data_dir=tmp_path, download=False),
        lambda: load_dataset("fashion_mnist", data_dir=tmp_path, download=False),
    ):
        with pytest.raises(DataError) as e:
            call()
        msg = str(e.value)
        assert "train-images-idx3-ubyte.gz" in msg and "t10k-labels-idx1-ubyte.gz" in msg
        assert str(tmp_path / "fashion_mnist") in msg and str(debian) in msg
        assert "--data-dir" in msg and "LTH_DATA" in msg
    with pytest.raises(DataError, match="cifar-10-python.tar.gz.*--data-dir"):
        check_available("cifar10", data_dir=tmp_path, download=False)


def test_check_available_with_download_never_touches_the_network(tmp_path, monkeypatch):
    def no_network(*a, **k):
        raise AssertionError("check_available must not download")

    monkeypatch.setattr("lth.data.download.urlopen", no_network)
    check_available("mnist", data_dir=tmp_path, download=True)
    check_available("cifar100", data_dir=tmp_path, download=True)
    check_available("mnist1d", data_dir=tmp_path, download=False)
    check_available("synthetic")


def test_unknown_dataset_lists_known_names():
    with pytest.raises(DataError, match="mnist, fashion_mnist, cifar10, cifar100, mnist1d, synthetic"):
        check_available("imagenet")
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("svhn")


def test_resolve_data_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("LTH_DATA", str(tmp_path / "env"))
    assert data.resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert data.resolve_data_dir(None) == tmp_path / "env"
    monkeypatch.delenv("LTH_DATA")
    assert data.resolve_data_dir(None) == Path.home() / ".cache" / "lth"


def test_lth_data_env_is_used_by_loader(monkeypatch, tmp_path):
    write_tiny_mnist(tmp_path / "mnist")
    monkeypatch.setenv("LTH_DATA", str(tmp_path))
    assert len(load_dataset("mnist", val_size=0, download=False).train) == 50


# ---------------------------------------------------------------------------------------------------- CIFAR


def cifar_batch(rng, n: int, label_key: bytes, num_classes: int) -> dict:
    return {
        b"batch_label": b"tiny batch",
        label_key: rng.integers(0, num_classes, n).tolist(),
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [b"img%d.png" % i for i in range(n)],
    }


def write_tiny_cifar10(folder: Path, seed: int = 0) -> dict[str, dict]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    batches = {n: cifar_batch(rng, 4 if n != "test_batch" else 3, b"labels", 10) for n in names}
    for n, b in batches.items():
        (folder / n).write_bytes(pickle.dumps(b, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"airplane"] * 10}, protocol=2))
    return batches


def make_tar(tar_path: Path, source: Path) -> None:
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(source, arcname=source.name)


def check_cifar10(ds, batches) -> None:
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    all_x = np.concatenate([b[b"data"] for b in train]).reshape(-1, 3, 32, 32)
    all_y = sum((b[b"labels"] for b in train), [])
    assert (len(ds.train), len(ds.val), len(ds.test)) == (15, 5, 3)
    assert ds.input_shape == (3, 32, 32) and ds.train.x.shape[1:] == (3, 32, 32)
    test_pixels = batches["test_batch"][b"data"].reshape(3, 3, 32, 32)
    np.testing.assert_array_equal(denormalize(ds.test.x, "cifar10"), test_pixels)
    assert ds.test.y.tolist() == batches["test_batch"][b"labels"]
    x = torch.cat([ds.train.x, ds.val.x])
    y = torch.cat([ds.train.y, ds.val.y])
    got = sorted(zip(map(bytes, denormalize(x, "cifar10")), y.tolist(), strict=True))
    assert got == sorted(zip(map(bytes, all_x), all_y, strict=True))


def test_cifar10_folder_round_trip(tmp_path):
    batches = write_tiny_cifar10(tmp_path / "cifar-10-batches-py")
    check_available("cifar10", data_dir=tmp_path, download=False)
    check_cifar10(load_dataset("cifar10", data_dir=tmp_path, val_size=5, download=False), batches)
    # pointing straight at the extracted folder works too
    check_cifar10(load_dataset("cifar10", data_dir=tmp_path / "cifar-10-batches-py", val_size=5), batches)


def test_cifar10_tar_gz_is_extracted_and_reused(tmp_path):
    batches = write_tiny_cifar10(tmp_path / "src" / "cifar-10-batches-py")
    (tmp_path / "data" / "cifar10").mkdir(parents=True)
    archive = tmp_path / "data" / "cifar10" / "cifar-10-python.tar.gz"
    make_tar(archive, tmp_path / "src" / "cifar-10-batches-py")
    check_cifar10(load_dataset("cifar10", data_dir=tmp_path / "data", val_size=5, download=False), batches)
    extracted = tmp_path / "data" / "cifar10" / "cifar-10-batches-py"
    assert (extracted / "data_batch_5").is_file() and (extracted / "test_batch").is_file()
    archive.unlink()  # now served from the extracted folder
    check_cifar10(load_dataset("cifar10", data_dir=tmp_path / "data", val_size=5, download=False), batches)


def test_cifar100_fine_labels_from_tar(tmp_path):
    rng = np.random.default_rng(1)
    src = tmp_path / "cifar-100-python"
    src.mkdir()
    train, test = cifar_batch(rng, 12, b"fine_labels", 100), cifar_batch(rng, 4, b"fine_labels", 100)
    train[b"coarse_labels"] = [0] * 12
    (src / "train").write_bytes(pickle.dumps(train, protocol=2))
    (src / "test").write_bytes(pickle.dumps(test, protocol=4))
    make_tar(tmp_path / "cifar-100-python.tar.gz", src)
    for p in src.iterdir():
        p.unlink()
    src.rmdir()
    ds = load_dataset("cifar100", data_dir=tmp_path, val_size=2, download=False)
    assert ds.num_classes == 100 and (len(ds.train), len(ds.val), len(ds.test)) == (10, 2, 4)
    assert ds.test.y.tolist() == test[b"fine_labels"]
    np.testing.assert_array_equal(denormalize(ds.test.x, "cifar100"), test[b"data"].reshape(4, 3, 32, 32))


def test_cifar_truncated_tar_and_hostile_pickle(tmp_path):
    write_tiny_cifar10(tmp_path / "src" / "cifar-10-batches-py")
    make_tar(tmp_path / "cifar-10-python.tar.gz", tmp_path / "src" / "cifar-10-batches-py")
    blob = (tmp_path / "cifar-10-python.tar.gz").read_bytes()
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="cifar-10-python.tar.gz.*download it again"):
        load_dataset("cifar10", data_dir=tmp_path, val_size=5, download=False)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    folder = tmp_path / "evil" / "cifar-10-batches-py"
    write_tiny_cifar10(folder)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}, protocol=2))
    with pytest.raises(DataError, match="test_batch"):
        load_dataset("cifar10", data_dir=tmp_path / "evil", val_size=5, download=False)


# -------------------------------------------------------------------------------------- MNIST-1D, synthetic


def test_mnist1d_shapes_cache_determinism_and_global_rng(tmp_path, monkeypatch):
    np.random.seed(123)
    random.seed(123)
    np_state, py_state = np.random.get_state(), random.getstate()
    ds = load_dataset("mnist1d", data_dir=tmp_path)
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:]
    assert random.getstate() == py_state
    assert (ds.train.x.shape, ds.val.x.shape, ds.test.x.shape) == ((3500, 40), (500, 40), (1000, 40))
    assert ds.train.x.dtype == torch.float32 and ds.train.y.dtype == torch.int64 and ds.input_shape == (40,)
    assert (tmp_path / "mnist1d" / "mnist1d_seed42.npz").is_file()

    import lth.data.mnist1d as m1d

    monkeypatch.setattr(m1d, "_generate", lambda: pytest.fail("the cache should have been used"))
    again = load_dataset("mnist1d", data_dir=tmp_path)
    for a, b in [(ds.train, again.train), (ds.val, again.val), (ds.test, again.test)]:
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)


def test_mnist1d_generation_is_deterministic(tmp_path):
    a = load_dataset("mnist1d", data_dir=tmp_path / "a")
    b = load_dataset("mnist1d", data_dir=tmp_path / "b")
    assert torch.equal(a.test.x, b.test.x) and torch.equal(a.train.y, b.train.y)


def test_synthetic_is_deterministic_and_learnable():
    ds = load_dataset("synthetic")
    assert (len(ds.train), len(ds.val), len(ds.test)) == (500, 100, 200)
    assert ds.input_shape == (1, 16, 16) and ds.train.x.shape == (500, 1, 16, 16)
    assert torch.equal(ds.test.x, load_dataset("synthetic").test.x)
    torch.manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(nn.Flatten(), nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, 10))
    batches = Batches(ds.train, 50, seed=0)
    for step in range(200):  # plain SGD by hand: torch.optim's first use costs a slow import
        x, y = batches.get(step)
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.05 * p.grad
    with torch.no_grad():
        acc = (model(ds.test.x).argmax(1) == ds.test.y).float().mean().item()
    assert acc > 0.6  # chance is 0.1


def test_val_split_sizes_seed_and_errors():
    a = load_dataset("synthetic", val_size=50, split_seed=0)
    b = load_dataset("synthetic", val_size=50, split_seed=1)
    assert len(a.train) == 550 and len(a.val) == 50 and not torch.equal(a.val.x, b.val.x)
    assert torch.equal(a.test.x, b.test.x)  # the test split is untouched
    assert len(load_dataset("synthetic", val_size=0).val) == 0
    for bad in (-1, 600, 1000):
        with pytest.raises(DataError, match="val_size"):
            load_dataset("synthetic", val_size=bad)


def test_load_from_config_and_to_device():
    ds = data.load(DataConfig(dataset="synthetic", val_size=20, split_seed=3), device="cpu")
    assert ds.name == "synthetic" and len(ds.val) == 20
    moved = ds.to("cpu")
    assert isinstance(moved.train, Split) and moved.train.x.device.type == "cpu"
    assert set(data.DATASETS) == {"mnist", "fashion_mnist", "cifar10", "cifar100", "mnist1d", "synthetic",
                                  "mnist1d_seq", "mnist_rows", "chars", "chars_tiny"}


# ---------------------------------------------------------------------------------------------------- Batches


def toy_split(n: int = 103, shape: tuple[int, ...] = (2,)) -> Split:
    x = torch.arange(n, dtype=torch.float32).view(n, *([1] * len(shape))).expand(n, *shape).contiguous()
    return Split(x, torch.arange(n))


def test_batches_epochs_are_permutations_and_seeded():
    split = toy_split(103)
    b = Batches(split, 10, seed=7)
    assert b.steps_per_epoch == 10  # the last 3 are dropped
    for epoch in range(3):
        ys = torch.cat([b.get(epoch * 10 + i)[1] for i in range(10)])
        assert len(set(ys.tolist())) == 100  # each index at most once, 100 of them
    e0 = torch.cat([b.get(i)[1] for i in range(10)])
    e1 = torch.cat([b.get(10 + i)[1] for i in range(10)])
    assert not torch.equal(e0, e1)
    same = Batches(split, 10, seed=7)
    other = Batches(split, 10, seed=8)
    assert torch.equal(same.get(13)[1], b.get(13)[1]) and not torch.equal(other.get(13)[1], b.get(13)[1])
    x, y = b.get(4)
    assert torch.equal(x[:, 0], y.float())  # inputs travel with their labels


def test_batches_full_epoch_covers_every_index():
    b = Batches(toy_split(60), 20, seed=0)
    ys = torch.cat([b.get(3 + i)[1] for i in range(3)])  # epoch 1 exactly
    assert sorted(ys.tolist()) == list(range(60))


def test_batches_resume_is_exact():
    split = toy_split(64, (1, 8, 8))
    seq = Batches(split, 16, seed=3, augment=True)
    sequential = [seq.get(s) for s in range(12)]
    for s in (0, 5, 9, 11):
        fresh = Batches(split, 16, seed=3, augment=True)
        x, y = fresh.get(s)
        assert torch.equal(x, sequential[s][0]) and torch.equal(y, sequential[s][1])
    # out-of-order access (going back an epoch) is still pure
    assert torch.equal(seq.get(1)[0], sequential[1][0])


def test_steps_per_epoch_and_batch_size_errors():
    assert Batches(toy_split(45_000, (1,)), 64, seed=0).steps_per_epoch * 160 == 112_480
    with pytest.raises(DataError, match="batch_size=11"):
        Batches(toy_split(10), 11, seed=0)
    with pytest.raises(DataError, match="augmentation"):
        Batches(toy_split(10), 5, seed=0, augment=True)


def reference_augment(x: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor, pad: int) -> torch.Tensor:
    b, c, h, w = x.shape
    out = torch.empty_like(x)
    for k in range(b):
        padded = torch.zeros(c, h + 2 * pad, w + 2 * pad)
        padded[:, pad : pad + h, pad : pad + w] = x[k]
        r, s = int(shifts[k, 0]), int(shifts[k, 1])
        crop = padded[:, r : r + h, s : s + w]
        out[k] = crop.flip(-1) if flips[k] else crop
    return out


@pytest.mark.parametrize("pad,shape", [(4, (9, 3, 32, 32)), (2, (7, 1, 5, 6))])
def test_augment_batch_matches_reference(pad, shape):
    g = torch.Generator().manual_seed(pad)
    x = torch.randn(*shape, generator=g)
    shifts = torch.randint(0, 2 * pad + 1, (shape[0], 2), generator=g)
    shifts[0] = torch.tensor([0, 2 * pad])  # the extreme offsets
    flips = torch.randint(0, 2, (shape[0],), generator=g).bool()
    assert torch.equal(augment_batch(x, shifts, flips, pad=pad), reference_augment(x, shifts, flips, pad))
    centered = torch.full((shape[0], 2), pad)
    assert torch.equal(augment_batch(x, centered, torch.zeros(shape[0], dtype=torch.bool), pad=pad), x)
