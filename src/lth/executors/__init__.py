"""Who runs an experiment's work: the experiment describes it as tasks (plain calls and trainings, each
taking the results it depends on), an executor runs them and returns their results.

- `LocalExecutor` (local.py): this process; trainings that become ready together are trained one at a time
  or K at once in a batched pass (`--compute.batch`).
A cluster executor implements the same three methods (`submit`, `train`, `gather`).
"""

from lth.executors.base import Executor, Handle, JobResult, TrainJob
from lth.executors.local import LocalExecutor

__all__ = ["Executor", "Handle", "JobResult", "LocalExecutor", "TrainJob"]
