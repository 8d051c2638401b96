"""A user's own training loop as a training of an lth run (`find_tickets`, `lth rl`).

lth cannot see inside a foreign loop, so it gives the loop a `Loop` to talk back through, and it keeps the
pruned weights at zero whatever the loop does:
- the mask is applied before the loop starts;
- a gradient hook on every pruned tensor zeroes the gradients of pruned weights, so they never enter a
  gradient-norm clip or an optimizer's moments (SB3's PPO clips the norm of all its gradients);
- after every step of any torch optimizer, while the loop runs, the mask is applied again (a coupled weight
  decay, or an optimizer built before lth's hook, cannot revive a weight);
- before every forward pass of the model the mask is applied again (for loops that write the weights).
A loop that calls parts of the model directly (SB3 calls `policy.evaluate_actions`, not `forward`) is covered
by the first three.

Through the `Loop` (the loop's optional third argument) the function learns where its training starts
(`start_step`: k when rewinding), reports the steps it reaches (`reached`: lth keeps θ_k of the dense
training), logs evaluation rows (`log`: the training's metrics.csv) and checkpoints its own state
(`save_state` / `resume_state`), so that a killed training resumes where it stopped.
"""

from __future__ import annotations

import inspect
import time
from pathlib import Path
from typing import Any

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from lth.errors import UserError
from lth.executors.base import JobResult, TrainJob


class Loop:
    """What lth tells a foreign training loop, and what the loop tells lth (its third argument)."""

    def __init__(self, job: TrainJob, model: torch.nn.Module, state: dict | None):
        self.key = job.key
        """Where the training sits in its run, e.g. `rep0/level03/ticket`."""
        self.start_step = job.start_step
        """The step the training starts at: 0, or k when the level was rewound to θ_k (continue the learning-
        rate schedule and data from there, as lth's own loop does)."""
        self.data_seed = job.train.data_seed
        """The seed of the replicate's data order (its environments, for an agent): the same for every branch
        of a replicate, as in lth's own loop."""
        self.checkpoint_seconds = job.checkpoint_seconds
        """How often (wall time) lth asks for resumable state: see `due`."""
        self._model, self._job = model, job
        self._save_at = {step: Path(path) for step, path in job.save_at.items()}
        self.metrics: list[dict[str, Any]] = list(state["metrics"]) if state else []
        self.resume_step: int | None = int(state["step"]) if state else None
        """The step the saved state was taken at (None: a fresh start)."""
        self.resume_state: Any = state.get("user") if state else None
        """What the loop passed to `save_state` before the kill (None: a fresh start). The model's weights are
        already restored by lth."""
        self._last_save = time.perf_counter()
        self._last_step = self.resume_step if state else None

    def reached(self, step: int) -> None:
        """The loop has done `step` steps and the model holds their weights. lth keeps the weights it must
        (θ_k of the dense training for rewinding). Report every step, or at least each step lth may need: a
        step it needs that is skipped over is an error."""
        if self._last_step is not None and step < self._last_step:
            raise UserError(f"{self.key}: train_fn reported step {step} after step {self._last_step}; steps must "
                            "not go back")
        for at, path in sorted(self._save_at.items()):
            if step == at and not path.exists():
                from lth.fileio import save_weights

                save_weights(self._model, path)
            elif step > at and not path.exists():
                raise UserError(f"{self.key}: train_fn reported step {step} but never step {at}, where lth keeps "
                                f"θ_{at} for rewinding; report that step with loop.reached({at}) (or rewind to a "
                                "step your loop reports, e.g. a multiple of its rollout or epoch)")
        self._last_step = step

    def log(self, step: int, **numbers: float) -> None:
        """One row of the training's metrics (metrics.csv), e.g. loop.log(5000, eval_return=212.5)."""
        self.metrics.append({"step": step, **{k: float(v) for k, v in numbers.items()}})

    def due(self) -> bool:
        """Whether `checkpoint_seconds` have passed since the last saved state (or the start)."""
        return self._job.resume_path is not None and \
            time.perf_counter() - self._last_save >= self._job.checkpoint_seconds

    def save_state(self, step: int, state: Any) -> None:
        """Keep resumable state, taken when `step` steps are done: lth saves the model's weights with it and
        the metrics logged so far. `state` holds what else the loop needs to continue bit for bit (optimizer,
        RNG and environment states), as tensors, numbers, strings, lists, dicts and None only: it is loaded
        without unpickling code."""
        from lth.train.checkpoint import save_state

        if self._job.resume_path is None:
            return
        save_state({"step": step, "model": self._model.state_dict(), "optimizer": {}, "metrics": self.metrics,
                    "user": state}, self._job.resume_path)
        self._last_save = time.perf_counter()

    def check_done(self) -> None:
        missing = [at for at, path in self._save_at.items() if not path.exists()]
        if missing:
            raise UserError(f"{self.key}: train_fn returned without reporting step {missing[0]}, where lth keeps "
                            f"θ_{missing[0]} for rewinding; call loop.reached(step) as training goes (is the "
                            "rewind step beyond your training's length?)")


class MaskGuard:
    """Keeps the pruned weights of `model` at zero while a foreign loop trains it (see the module's doc)."""

    def __init__(self, model: torch.nn.Module, mask):
        self.model, self.mask = model, mask
        params = dict(model.named_parameters())
        pruned = [n for n in mask if not bool(mask[n].all())]
        self._keep = {n: mask[n].to(params[n].device, params[n].dtype) for n in pruned}
        self._params = {n: params[n] for n in pruned}
        self._handles: list[Any] = []

    @torch.no_grad()
    def apply(self) -> None:
        for n, p in self._params.items():
            p.mul_(self._keep[n])

    def __enter__(self) -> "MaskGuard":
        self.mask.apply_(self.model)
        for n, p in self._params.items():
            self._handles.append(p.register_hook(lambda g, keep=self._keep[n]: g * keep))
        self._handles.append(register_optimizer_step_post_hook(lambda *_: self.apply()))
        self._handles.append(self.model.register_forward_pre_hook(lambda *_: self.apply()))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self.mask.apply_(self.model)


def takes_loop(train_fn) -> bool:
    """Whether train_fn accepts a third argument (the Loop)."""
    try:
        params = list(inspect.signature(train_fn).parameters.values())
    except (TypeError, ValueError):
        return False
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return True
    return len([p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]) >= 3


def run_function_job(job: TrainJob) -> JobResult:
    """A user's own training loop: train_fn(model, mask[, loop]) trains the model in place and returns the
    numbers to record; lth keeps the pruned weights at zero (MaskGuard) and resumes from its saved state."""
    from lth.executors.local import build_start
    from lth.train.loop import read_resume_state

    model = build_start(job)
    state = read_resume_state(job.resume_path)
    if state is not None and "user" not in state:
        state = None  # not a foreign loop's state (another version of the run): start the training over
    if state is not None:
        model.load_state_dict(state["model"])
    loop = Loop(job, model, state)
    t0 = time.perf_counter()
    with MaskGuard(model, job.mask):
        out = job.train_fn(model, job.mask, loop) if takes_loop(job.train_fn) else job.train_fn(model, job.mask)
    loop.check_done()
    if out is None:
        out = {}
    if not isinstance(out, dict):
        raise UserError(f"train_fn must return a dict of numbers such as {{'test_acc': 0.97}} (or None), got "
                        f"{type(out).__name__}: {out!r:.80}")
    summary = {k: float(v) for k, v in out.items()
               if isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)}
    return JobResult(_rows(loop.metrics), summary, time.perf_counter() - t0, model.state_dict())


def _rows(metrics: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Logged rows with one set of columns (a value a row lacks is left empty), for metrics.csv."""
    columns: list[str] = []
    for row in metrics:
        columns += [k for k in row if k not in columns]
    return [{k: row.get(k) for k in columns} for row in metrics]
