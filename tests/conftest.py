import os

import pytest

# Two cores: one intra-op thread per process keeps timings stable and avoids spin-wait contention when
# tests run subprocesses.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

from lth.config import (  # noqa: E402
    DataConfig,
    ExperimentConfig,
    LotteryConfig,
    ModelConfig,
    PruneConfig,
    TrainConfig,
)


@pytest.fixture
def tiny_cfg(tmp_path) -> ExperimentConfig:
    """A few-second IMP experiment on the synthetic dataset."""
    return ExperimentConfig(
        data=DataConfig(dataset="synthetic", data_dir=str(tmp_path / "data")),
        model=ModelConfig(name="lenet_300_100", hidden=(32, 16)),
        train=TrainConfig(optimizer="adam", lr=3e-3, batch_size=50, budget="60it", eval_every="20it"),
        prune=PruneConfig(rate=0.5),
        lottery=LotteryConfig(levels=2),
        out_dir=str(tmp_path / "runs"),
        device="cpu",
    )


@pytest.fixture(scope="session")
def data(tmp_path_factory):
    """The synthetic dataset (generated, offline), shared by the trainer tests."""
    from lth.data import load_dataset

    return load_dataset("synthetic", data_dir=tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def mlp():
    """A factory of small LeNet-style MLPs for `data`: mlp(data, seed=0, dropout=0.0)."""
    from lth.models import build_model

    def make(data, seed: int = 0, dropout: float = 0.0):
        return build_model(ModelConfig(name="lenet_300_100", hidden=(64, 32), dropout=dropout),
                           input_shape=data.input_shape, num_classes=data.num_classes, seed=seed)

    return make


def pytest_configure(config):
    # The machines that run the tests are often busy; lth's warning about that says nothing about what a test
    # checks (tests/test_machine.py checks the warning itself).
    config.addinivalue_line("filterwarnings", "ignore::lth.errors.BusyMachineWarning")


def run_results(root) -> dict:
    """What a run computed, for comparing two runs bit for bit: every summary (less its wall time), every
    metrics.csv, and every weights and mask file."""
    import json
    from pathlib import Path

    root, out = Path(root), {}
    for p in sorted(root.rglob("summary.json")):
        s = json.loads(p.read_text())
        s.pop("seconds", None)
        out[str(p.relative_to(root))] = s
    for pattern in ("metrics.csv", "*.safetensors"):
        for p in sorted(root.rglob(pattern)):
            out[str(p.relative_to(root))] = p.read_bytes()
    return out
