"""Data-parallel trainings under torchrun: `torchrun --standalone --nproc_per_node N -m lth train|run ...`.

Rank 0 runs the command as it runs alone: it resolves the config, holds the run folder, reads and writes
every file in it, and prints. The other ranks run no experiment: they `serve`, receiving each training from
rank 0 (its TrainJob, broadcast) and training it together with rank 0, data-parallel (lth.train.ddp). Only
rank 0 writes: the other ranks keep no checkpoint and save nothing, and resume from the state rank 0 reads.
The process group uses gloo for CPU tensors and NCCL for CUDA ones; on CUDA each rank trains on the GPU of
its LOCAL_RANK.
"""

from __future__ import annotations

import os
from typing import Any

from lth.errors import ConfigError
from lth.executors.base import JobResult, TrainJob, process_dataset
from lth.executors.local import LocalExecutor, build_start


def world_size() -> int:
    """How many processes torchrun started for this command (1 when it runs alone)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def rank_device(device):
    """The device of this rank: its own GPU (LOCAL_RANK) when training on CUDA under torchrun."""
    import torch

    if world_size() > 1 and device.type == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def init_from_env() -> bool:
    """Join the process group torchrun describes, once; False when this process runs alone."""
    if world_size() <= 1:
        return False
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group("cpu:gloo,cuda:nccl")
        else:
            dist.init_process_group("gloo")
    return True


def _broadcast(message: Any = None) -> Any:
    """Rank 0 sends `message` to every rank; the others receive it."""
    import torch.distributed as dist

    box = [message]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def train_data_parallel(job: TrainJob, device, compute, data, *, writer: bool,
                        progress: bool | None = False) -> JobResult:
    """Train `job` together with the other ranks. `writer` (rank 0): keeps the checkpoints and save_at files."""
    import torch

    from lth.fileio import save_weights
    from lth.train.ddp import DDPStepper
    from lth.train.loop import Hooks, Member, run_loop
    from lth.train.module import single_stepper

    if compute.threads:
        torch.set_num_threads(compute.threads)
    model = build_start(job, device)
    hooks = Hooks(save_at={s: (lambda step, m, p=p: save_weights(m, p)) for s, p in job.save_at.items()}
                  if writer else {}, resume_path=job.resume_path if writer else None,
                  checkpoint_seconds=job.checkpoint_seconds)
    stepper = DDPStepper(single_stepper(model, job.train, job.mask, device=device, compute=compute),
                         data_seed=job.train.data_seed)
    [r] = run_loop(stepper, [Member(model, job.train, job.mask, hooks)], data, start_step=job.start_step,
                   augment=job.augment, progress=progress, desc=job.key, compute=compute)
    gap = stepper.agreement()
    if gap != 0:
        raise RuntimeError(f"the data-parallel ranks ended {job.key} with different weights (by up to {gap}); "
                           "they must agree bit for bit: this is a bug in lth")
    return JobResult(r.metrics, r.summary, r.seconds, model.state_dict())


class DistributedExecutor(LocalExecutor):
    """Rank 0's executor: the local executor's graph, each training trained by every rank together."""

    def __init__(self, **kwargs):
        if rank() != 0:
            raise RuntimeError("under torchrun only rank 0 runs an experiment; the other ranks call "
                               "lth.executors.distributed.serve() (the lth command does this)")
        super().__init__(**kwargs)
        init_from_env()

    def run_jobs(self, jobs: list[TrainJob | None]) -> list[JobResult | None]:
        for job in jobs:
            if job is not None and job.train_fn is not None:  # it would run on rank 0 while the others wait
                raise ConfigError(f"{job.key} trains with its own loop (a train_fn: lth rl, find_tickets), which "
                                  "cannot run data-parallel; run it without torchrun")
        return super().run_jobs(jobs)

    def _run_lth_jobs(self, jobs: list[TrainJob]) -> list[JobResult]:
        results = []
        for job in jobs:
            if job.stepper is not None:
                raise ConfigError(f"{job.key} trains with its own stepper, which cannot run data-parallel; run "
                                  "this experiment without torchrun")
            if job.train.batch_size < world_size():  # a rank with no rows would make every loss NaN
                raise ConfigError(f"--train.batch_size {job.train.batch_size} is smaller than the {world_size()} "
                                  "torchrun processes, which split each batch: give each at least one example")
            _broadcast((job, self.device.type, self.compute))
            results.append(train_data_parallel(job, self.device, self.compute, self.dataset(job.data),
                                               writer=True, progress=self.progress))
        return results


def serve() -> None:
    """Ranks other than 0: train what rank 0 sends, until it sends None."""
    import torch

    init_from_env()
    while True:
        try:
            message = _broadcast()
        except RuntimeError:  # rank 0 ended without a word (an error, printed there): torchrun reports it
            return
        if message is None:
            return
        job, device_type, compute = message
        device = rank_device(torch.device(device_type))
        train_data_parallel(job, device, compute, process_dataset(job.data, device), writer=False)


def stop_serving() -> None:
    """Rank 0, at the end of its command: the other ranks stop serving and exit."""
    if world_size() > 1 and rank() == 0:
        _broadcast(None)
