"""Run an experiment's graph as Ray tasks (`--executor ray`, `pip install 'lth[ray]'`).

`submit(fn, *args)` is a Ray task whose handle arguments are ObjectRefs: Ray passes it their results once
they exist, so everything that is ready runs in parallel (an IMP run's replicates, and a level's controls
beside the next level's chain). `train(job)` is a Ray task that trains a TrainJob with the same code as the
local executor, reserving `--executor.cpus_per_task` CPUs (also its thread count) and
`--executor.gpus_per_task` GPUs.

Every task reads and writes the run folder, which every worker must see at the same path (a shared
filesystem), and skips what is already there; a training resumes from its resume.pt. So a task that Ray
reruns after its worker died (`max_retries`) continues where it stopped. An application error is rerun only
when it may pass (`RETRY_ON`: I/O errors of a shared filesystem); a UserError (bad config, a damaged file)
is never rerun and ends the run at once with its own message.

The driver (this process) holds the run folder's lock, prints each level's table as it completes, and a
progress line with the trainings done and running (from a small counting actor, `Tally`).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from lth.config import ComputeConfig, ExecutorConfig
from lth.errors import ConfigError, UserError

INSTALL = "pip install 'lth[ray]'"
RETRY_ON = (OSError,)
"""Application errors worth rerunning a task for (a shared filesystem's transient I/O errors)."""
POLL_SECONDS = 0.5


def require_ray(local: bool = True):
    """The ray module, or a ConfigError with the pip command. A local instance is bound to 127.0.0.1: it
    serves only this machine, and nothing of it listens on the network."""
    if local and "ray" not in sys.modules:
        # Ray otherwise binds its local services to the machine's network address. This setting (read when
        # ray is imported) makes it use the loopback address, as it does on a laptop.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--executor ray needs Ray, which is not installed here: {INSTALL}") from None
    return ray


def check_reachable(address: str, timeout: float = 3.0) -> None:
    """Refuse, within seconds, an address where no Ray head answers (ray.init could wait much longer)."""
    target = address.split("://", 1)[-1]
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"--executor.address {address!r} must be HOST:PORT of a Ray head node (e.g. "
                          "10.0.0.5:6379, as `ray start --head` prints), or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        reason = "timed out" if isinstance(e, TimeoutError) else (e.strerror or str(e))
        raise ConfigError(f"--executor.address {address}: no Ray cluster answers there ({reason}). Start one "
                          f"with `ray start --head --port {port}` on that machine, check the address, or leave "
                          "out --executor.address to start a local Ray instance") from None


def connect(settings: ExecutorConfig) -> bool:
    """Connect this process to Ray: join `settings.address`, or start a local instance. True when this call
    connected (so closing the executor disconnects, and stops a local instance); False when this process
    was already connected (a test's instance, a sweep's)."""
    ray = require_ray(local=not settings.address)
    if settings.address not in ("", "auto"):
        check_reachable(settings.address)
    if ray.is_initialized():
        return False
    import lth

    # Workers import the lth this driver runs (same path on a shared filesystem), not another install.
    code = str(Path(lth.__file__).resolve().parents[1])
    options = dict(include_dashboard=False, logging_level="WARNING",
                   job_config=ray.job_config.JobConfig(code_search_path=[code]))
    if not settings.address:
        ray.init(address="local", **options)
        return True
    try:
        ray.init(address=settings.address, **options)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ConfigError(f"--executor.address {settings.address}: could not join a Ray cluster there "
                          f"({str(e).splitlines()[0]}). Start one with `ray start --head`, or leave out "
                          "--executor.address to start a local Ray instance") from None
    return True


class Refused(Exception):
    """A UserError raised in a task, carried to the driver in a type Ray never retries."""

    def __init__(self, error: UserError):
        super().__init__(str(error))
        self.error = error

    def __reduce__(self):
        return (Refused, (self.error,))


class Tally:
    """A Ray actor that counts trainings: which are running, how many are done, and the first refusal."""

    def __init__(self):
        self.running: dict[str, int] = {}
        """Training key -> the process id of the worker training it."""
        self.done = 0
        self.refused: UserError | None = None

    def started(self, key: str, pid: int) -> None:
        self.running[key] = pid

    def ended(self, key: str, ok: bool) -> None:
        self.running.pop(key, None)
        self.done += ok

    def workers(self) -> dict[str, int]:
        return dict(self.running)

    def refuse(self, error: UserError) -> None:
        self.refused = self.refused or error

    def forget(self) -> None:
        """The refusal was raised on the driver: the executor may go on with other work."""
        self.refused = None

    def state(self) -> tuple[int, list[str], UserError | None]:
        return self.done, sorted(self.running), self.refused


# -- what runs on a worker --------------------------------------------------------------------------------
_EXECUTORS: dict[tuple[str, ComputeConfig], Any] = {}


def _enter(cwd: str) -> None:
    """Run where the driver runs, so that relative paths (runs/, a data folder) mean the same on a worker."""
    if cwd and os.path.isdir(cwd) and os.getcwd() != cwd:
        os.chdir(cwd)


def _call(cwd: str, tally, fn, *args):
    _enter(cwd)
    try:
        return fn(*args)
    except UserError as e:
        _refuse(tally, e)


def _refuse(tally, error: UserError):
    """Tell the tally before the task ends: the driver may ask it as soon as it sees the task done, and a
    refusal that arrived after the driver moved on would be raised again by a later gather."""
    import ray

    ray.get(tally.refuse.remote(error))
    raise Refused(error) from None


def _worker_executor(device: str, compute: ComputeConfig):
    """This worker's LocalExecutor for these settings: its datasets stay loaded between tasks."""
    from lth.executors.local import LocalExecutor
    from lth.train import resolve_device

    key = (device, compute)
    if key not in _EXECUTORS:
        _EXECUTORS[key] = LocalExecutor(device=resolve_device(device), compute=compute, progress=False)
    return _EXECUTORS[key]


def _train(cwd: str, tally, device: str, compute: ComputeConfig, job):
    """Train one TrainJob as the local executor would (None: finished earlier, nothing to train)."""
    if job is None:
        return None
    import torch

    from lth.executors.base import process_dataset

    _enter(cwd)
    executor = _worker_executor(device, compute)
    torch.set_num_threads(compute.threads)  # a worker may have run another executor's tasks before
    if job.data is not None:
        executor.datasets.setdefault(job.data, process_dataset(job.data, executor.device))
    tally.started.remote(job.key, os.getpid())
    ok = False
    try:
        [result] = executor.run_jobs([job])
        ok = True
        return result
    except UserError as e:
        _refuse(tally, e)
    finally:
        tally.ended.remote(job.key, ok)


# -- the driver -------------------------------------------------------------------------------------------
class ProgressLine:
    """`ray: 5 trainings done, 2 running: rep0/level02/ticket, ...` on stderr whenever it changes (rewritten
    in place on a terminal), so that stdout holds exactly what a local run prints."""

    def __init__(self, enabled: bool | None, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = enabled is not False
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.last = ""
        self.lock = threading.Lock()

    def show(self, done: int, running: list[str]) -> None:
        if not self.enabled:
            return
        names = ", ".join(running[:4]) + (", ..." if len(running) > 4 else "")
        text = f"ray: {done} trainings done, {len(running)} running" + (f": {names}" if running else "")
        with self.lock:
            if text == self.last:
                return
            self.last = text
            if self.tty:
                self.stream.write("\r\033[K" + text)
            else:
                self.stream.write(text + "\n")
            self.stream.flush()

    def clear(self) -> None:
        with self.lock:
            if self.enabled and self.tty and self.last:
                self.stream.write("\r\033[K")
                self.stream.flush()
            self.last = ""


class RayExecutor:
    """The executor interface over Ray Core tasks; handles are ObjectRefs."""

    def __init__(self, settings: ExecutorConfig = ExecutorConfig(kind="ray"), *,
                 compute: ComputeConfig = ComputeConfig(), device: str = "auto", progress: bool | None = None,
                 datasets: dict | None = None):
        self.ray = require_ray(local=not settings.address)
        self.settings, self.device = settings, str(device)
        self.compute = replace(compute, threads=settings.threads(compute))
        self.datasets: dict[Any, Any] = dict(datasets or {})
        self.started = connect(settings)
        ray = self.ray
        retry = dict(max_retries=settings.max_retries, retry_exceptions=list(RETRY_ON))
        # Calls (masks, job setup, recording) are short: they reserve one CPU (at most a training's), no GPU.
        self._call = ray.remote(_call).options(num_cpus=min(1.0, settings.cpus_per_task), **retry)
        self._train = ray.remote(_train).options(num_cpus=settings.cpus_per_task,
                                                 num_gpus=settings.gpus_per_task, **retry)
        self.tally = ray.remote(Tally).options(num_cpus=0).remote()
        self.cwd = os.getcwd()
        self.line = ProgressLine(progress)
        self.submitted: list[Any] = []

    # -- the graph ---------------------------------------------------------------------------------
    def submit(self, fn, *args):
        ref = self._call.remote(self.cwd, self.tally, fn, *args)
        self.submitted.append(ref)
        return ref

    def train(self, job):
        ref = self._train.remote(self.cwd, self.tally, self.device, self.compute, job)
        self.submitted.append(ref)
        return ref

    def gather(self, handles: list) -> list:
        ray = self.ray
        pending = list(handles)
        while pending:
            _, pending = ray.wait(pending, num_returns=len(pending), timeout=POLL_SECONDS)
            done, running, refused = ray.get(self.tally.state.remote())
            if refused is not None:  # anywhere in the graph: fail now, not when its level is gathered
                self._stop()
                raise refused
            self.line.show(done, running)
        self.line.clear()  # the caller prints next (a level's table)
        try:
            return ray.get(list(handles))
        except ray.exceptions.RayTaskError as e:
            self._stop()
            cause = getattr(e, "cause", None)
            if isinstance(cause, Refused):
                raise cause.error from None
            raise

    def dataset(self, cfg):
        """The dataset on the driver (shapes and sizes; the trainings load it on their workers)."""
        if cfg not in self.datasets:
            from lth.executors.base import process_dataset

            self.datasets[cfg] = process_dataset(cfg)
        return self.datasets[cfg]

    # -- the end -----------------------------------------------------------------------------------
    def _stop(self) -> None:
        """Cancel what is still queued or running (its trainings keep their checkpoints)."""
        self.line.clear()
        self.ray.get(self.tally.forget.remote())
        for ref in self.submitted:
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 -- finished, or already gone
                pass
        self.submitted = []

    def close(self) -> None:
        self.line.clear()
        try:
            self.ray.kill(self.tally)
        except Exception:  # noqa: BLE001 -- the instance may be gone already
            pass
        if self.started:
            self.ray.shutdown()
