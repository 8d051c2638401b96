"""Started by tests/test_ddp.py as `torchrun --standalone --nproc_per_node 2 tests/helpers/ddp_ranks.py OUT ARGS`.

First `lth run ARGS` as torchrun runs it (rank 0 runs the command, rank 1 serves its trainings). Then one
more data-parallel training, driven here on both ranks, whose final weights every rank writes to
OUT/rank<r>.safetensors (lth itself writes from rank 0 only), with rank 0 checkpointing into OUT/resume.pt."""

import sys
from pathlib import Path

import torch.distributed as dist

from lth.cli import main
from lth.config import ComputeConfig, ModelConfig, TrainConfig
from lth.data import load_dataset
from lth.fileio import save_weights
from lth.models import build_model
from lth.train import Hooks, Member, run_loop
from lth.train.ddp import DDPStepper
from lth.train.module import single_stepper

out, args = Path(sys.argv[1]), sys.argv[2:]
assert main(["run", *args, "--out", str(out / "runs")]) == 0

rank = dist.get_rank()
data = load_dataset("synthetic", data_dir=out / "data")
model = build_model(ModelConfig(name="lenet_300_100", hidden=(32, 16)), input_shape=data.input_shape,
                    num_classes=data.num_classes, seed=0)
cfg = TrainConfig(optimizer="adam", lr=3e-3, batch_size=50, budget="60it", eval_every="20it")
hooks = Hooks(resume_path=out / "resume.pt" if rank == 0 else None, checkpoint_seconds=0)
stepper = DDPStepper(single_stepper(model, cfg, device=data.train.x.device, compute=ComputeConfig(threads=1)))
run_loop(stepper, [Member(model, cfg, None, hooks)], data, progress=False)
save_weights(model, out / f"rank{rank}.safetensors")
dist.destroy_process_group()
