"""Run an experiment's tasks in this process, in dependency order.

`gather` runs what the requested handles need: all ready calls first (they are cheap: masks, job setup,
recording), then all ready trainings together, so a level's trainings across replicates and branches
reach the trainer at once and can share a batched pass where `--compute.batch` allows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from lth.config import ComputeConfig
from lth.executors.base import Handle, JobResult, TrainJob


class LocalExecutor:
    def __init__(self, *, device: torch.device, compute: ComputeConfig = ComputeConfig(),
                 progress: bool | None = None, datasets: dict | None = None):
        self.device, self.compute, self.progress = device, compute, progress
        self.datasets: dict[Any, Any] = dict(datasets or {})
        if compute.threads:
            torch.set_num_threads(compute.threads)
        if device.type == "cpu":
            warn_if_busy()

    # -- the graph ---------------------------------------------------------------------------------
    def submit(self, fn: Callable[..., Any], *args: Any) -> Handle:
        return Handle("call", fn, args)

    def train(self, job: TrainJob | Handle | None) -> Handle:
        return Handle("train", None, (job,))

    def gather(self, handles: list[Handle]) -> list[Any]:
        order = self._pending(handles)
        while not all(h.done for h in handles):
            ready = [h for h in order if not h.done and all(d.done for d in h.deps())]
            calls = [h for h in ready if h.kind == "call"]
            for h in calls:
                h.value, h.done = h.fn(*self._values(h.args)), True
            if not calls:
                trains = [h for h in ready if h.kind == "train"]
                results = self.run_jobs([self._values(h.args)[0] for h in trains])
                for h, r in zip(trains, results):
                    h.value, h.done = r, True
        return [h.value for h in handles]

    @staticmethod
    def _values(args: tuple) -> list[Any]:
        return [a.value if isinstance(a, Handle) else a for a in args]

    @staticmethod
    def _pending(handles: list[Handle]) -> list[Handle]:
        """The not-yet-run tasks the handles need, each after its dependencies, in submission order."""
        seen: dict[int, Handle] = {}

        def visit(h: Handle) -> None:
            if id(h) in seen or h.done:
                return
            for d in h.deps():
                visit(d)
            seen[id(h)] = h

        for h in handles:
            visit(h)
        return list(seen.values())

    # -- trainings ---------------------------------------------------------------------------------
    def dataset(self, cfg):
        """The dataset of a DataConfig, loaded once per executor (on its device)."""
        if cfg not in self.datasets:
            from lth.data import load

            self.datasets[cfg] = load(cfg, device=self.device)
        return self.datasets[cfg]

    def run_jobs(self, jobs: list[TrainJob | None]) -> list[JobResult | None]:
        """Train the jobs: a user's own loop one at a time; lth's loop one at a time or in batched passes."""
        results: list[JobResult | None] = [None] * len(jobs)
        lth_jobs = []
        for i, job in enumerate(jobs):
            if job is None:
                continue
            if job.train_fn is not None:
                from lth.executors.function import run_function_job

                results[i] = run_function_job(job)
            else:
                lth_jobs.append(i)
        for i, r in zip(lth_jobs, self._run_lth_jobs([jobs[i] for i in lth_jobs])):
            results[i] = r
        return results

    def _run_lth_jobs(self, jobs: list[TrainJob]) -> list[JobResult]:
        from lth.fileio import save_weights
        from lth.train.loop import Hooks, Member, read_resume_state, run_loop
        from lth.train.module import single_stepper
        from lth.train.vmap import VmapStepper, batch_groups, why_not_batchable

        models = [build_start(job, self.device) for job in jobs]
        hooks = [Hooks(save_at={s: (lambda step, m, p=p: save_weights(m, p)) for s, p in job.save_at.items()},
                       resume_path=job.resume_path, checkpoint_seconds=job.checkpoint_seconds) for job in jobs]
        limit = self.compute.batch_limit(self.device.type)
        resume_steps = [None] * len(jobs)
        if limit:
            for i, job in enumerate(jobs):
                state = read_resume_state(job.resume_path)
                resume_steps[i] = None if state is None else int(state["step"])
        groups = batch_groups(models, [job.train for job in jobs], [job.start_step for job in jobs], resume_steps,
                              limit, alone=[job.stepper is not None for job in jobs])
        results: list[JobResult | None] = [None] * len(jobs)
        for group in groups:
            first = jobs[group[0]]
            members = [Member(models[i], jobs[i].train, jobs[i].mask, hooks[i]) for i in group]
            if first.stepper is not None:
                stepper = first.stepper(models[group[0]], first.train, first.mask, device=self.device,
                                        compute=self.compute)
            elif len(group) == 1 and (limit == 0 or why_not_batchable(models[group[0]]) is not None):
                stepper = single_stepper(models[group[0]], first.train, first.mask, device=self.device,
                                         compute=self.compute)
            else:
                stepper = VmapStepper([m.model for m in members], first.train, [m.mask for m in members],
                                      device=self.device, compute=self.compute)
            out = run_loop(stepper, members, self.dataset(first.data), start_step=first.start_step,
                           augment=first.augment, progress=self.progress,
                           desc=" ".join(jobs[i].key for i in group), compute=self.compute)
            for i, r in zip(group, out):
                results[i] = JobResult(r.metrics, r.summary, r.seconds, models[i].state_dict())
        return results


def warn_if_busy() -> None:
    """Warn when the CPU is already busy as trainings start: the 1-minute load average is at least the number
    of cores. One read of the load average, never fatal."""
    import os
    import warnings

    from lth.errors import BusyMachineWarning

    try:
        load, cores = os.getloadavg()[0], os.cpu_count() or 1
    except (AttributeError, OSError):  # no load average on this system
        return
    if load >= cores:
        warnings.warn(f"the machine is busy (1-minute load average {load:.1f} on {cores} cores): training will "
                      "share the CPU and take longer than on a quiet machine (its results are the same); "
                      "--compute.threads N sets how many threads it uses.", BusyMachineWarning, stacklevel=3)


def build_start(job: TrainJob, device: torch.device | None = None):
    """The job's network holding its starting weights."""
    model = job.build()
    if job.start is not None:
        model.load_state_dict(job.start)
    return model.to(device) if device is not None else model
