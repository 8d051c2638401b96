"""torchrun data-parallel training on the CPU: 2 processes over gloo train each training together. Their
final weights agree bit for bit, and equal a single process's with the same global batch within 1e-5 (the
split batch sums its gradients in another order); only rank 0 writes; the checkpoint records the world
size."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lth.cli import main
from lth.config import ComputeConfig, ModelConfig, TrainConfig
from lth.data import load_dataset
from lth.fileio import load_weights
from lth.models import build_model
from lth.train import train

HELPER = Path(__file__).parent / "helpers" / "ddp_ranks.py"
TOLERANCE = 1e-5
"""Largest weight difference allowed between 2 ranks on halves of a batch and 1 process on the whole (after
60 Adam steps on weights of magnitude about 1; measured: 6.3e-7)."""
ARGS = ["--data.dataset", "synthetic", "--model.name", "lenet_300_100", "--model.hidden", "32", "16",
        "--train.batch_size", "50", "--train.lr", "3e-3", "--train.budget", "60it", "--train.eval_every", "20it",
        "--prune.rate", "0.5", "--lottery.levels", "1", "--lottery.controls", "reinit", "--device", "cpu",
        "--compute.threads", "1", "--quiet", "--no-report"]


def torchrun() -> list[str]:
    exe = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    return [exe] if exe else [sys.executable, "-m", "torch.distributed.run"]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """One torchrun launch: `lth run` on 2 ranks, then a training whose weights each rank saves."""
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    args = [*ARGS, "--data-dir", str(out / "data")]
    proc = subprocess.run([*torchrun(), "--standalone", "--nproc_per_node", "2", str(HELPER), str(out), *args],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, args, proc.stdout


def test_ranks_agree_and_equal_one_process_on_the_same_global_batch(ranks):
    out, _, _ = ranks
    rank0, rank1 = load_weights(out / "rank0.safetensors"), load_weights(out / "rank1.safetensors")
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    data = load_dataset("synthetic", data_dir=out / "data")
    model = build_model(ModelConfig(name="lenet_300_100", hidden=(32, 16)), input_shape=data.input_shape,
                        num_classes=data.num_classes, seed=0)
    train(model, data, TrainConfig(optimizer="adam", lr=3e-3, batch_size=50, budget="60it", eval_every="20it"),
          progress=False, compute=ComputeConfig(threads=1))
    single = model.state_dict()
    gap = max((rank0[k] - single[k]).abs().max().item() for k in rank0)
    assert 0 < gap <= TOLERANCE  # 0 would mean the ranks did not split the batch


def test_the_checkpoint_records_the_world_size(ranks):
    out, _, _ = ranks
    assert torch.load(out / "resume.pt", weights_only=True)["world_size"] == 2


def test_lth_run_under_torchrun_matches_one_process_and_only_rank_0_writes(ranks, tmp_path, capsys):
    out, args, stdout = ranks
    assert stdout.count("level   P_m %") == 1  # only rank 0 prints
    [run] = (out / "runs").iterdir()
    assert main(["run", *args, "--out", str(tmp_path)]) == 0
    [alone] = tmp_path.iterdir()
    assert alone.name == run.name
    written = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    assert written == sorted(str(p.relative_to(alone)) for p in alone.rglob("*") if p.is_file())
    assert not any(".tmp" in name or "resume" in name for name in written)
    for name in ("rep0/level00/ticket/final.safetensors", "rep0/level01/ticket/final.safetensors"):
        a, b = load_weights(run / name), load_weights(alone / name)
        assert max((a[k] - b[k]).abs().max().item() for k in a) <= TOLERANCE
    assert (run / "rep0/level01/mask.safetensors").read_bytes() == (alone / "rep0/level01/mask.safetensors").read_bytes()
