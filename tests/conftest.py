import os

import pytest

# Two cores: one intra-op thread per process keeps timings stable and avoids spin-wait contention when
# tests run subprocesses.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

from lth.config import DataConfig, ExperimentConfig, LotteryConfig, ModelConfig, PruneConfig, TrainConfig  # noqa: E402


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
