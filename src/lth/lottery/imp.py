"""Iterative magnitude pruning (Frankle & Carbin 2019), with rewinding (Frankle et al. 2020), one-shot
pruning, controls and replicates, resumable at any moment.

The driver walks levels in order. Each level's trainings (every replicate's ticket and controls) are
independent once the level's masks are known, so they are collected into one list of jobs and handed to the
backend together: a backend may train them one at a time or several in one pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from lth.config import ExperimentConfig
from lth.lottery.branches import branch_names, branch_start, check_controls
from lth.prune import Mask, PrunePlan, pm_schedule, prune
from lth.store import PLAN_FILE, RunStore, Unit, write_json
from lth.train import Hooks, load_weights, save_weights


@dataclass
class Job:
    """One training of a level: a model holding its starting weights, its mask, and where it starts."""

    unit: Unit
    model: nn.Module
    mask: Mask
    start_step: int
    hooks: Hooks


class Backend(Protocol):
    """What the driver needs from whoever builds and trains the networks."""

    def build(self, seed: int) -> nn.Module: ...
    def rewind_step(self) -> int: ...
    def train(self, jobs: list[Job], store: RunStore) -> None:
        """Train every job and record it with store.write_result (summary must be written last)."""
        ...


def levels_to_run(cfg: ExperimentConfig, plan: PrunePlan) -> list[float]:
    """P_m of levels 0..L, stopping at cfg.lottery.levels or the first level at or below target_pm."""
    lot = cfg.lottery
    rates = plan.rates if plan.strategy == "layerwise" else next(iter(plan.rates.values()))
    schedule = pm_schedule(plan.sizes, rates, lot.levels, pruned=plan.pruned)
    if lot.target_pm is not None:
        for i, pm in enumerate(schedule):
            if pm <= lot.target_pm:
                return schedule[: i + 1]
    return schedule


def check_lottery(cfg: ExperimentConfig) -> None:
    """Refuse bad settings before any work starts."""
    lot, pr = cfg.lottery, cfg.prune
    for name, rate in (("rate", pr.rate), ("conv_rate", pr.conv_rate), ("output_rate", pr.output_rate),
                       ("embedding_rate", pr.embedding_rate)):
        if rate is not None and not 0 < rate < 1:
            raise ValueError(f"--prune.{name} must be a fraction in (0, 1) of the remaining weights, got {rate}")
    if lot.levels < 0:
        raise ValueError(f"--lottery.levels must be >= 0, got {lot.levels}")
    if lot.replicates < 1:
        raise ValueError(f"--lottery.replicates must be >= 1, got {lot.replicates}")
    if lot.reinit_draws < 1:
        raise ValueError(f"--lottery.reinit_draws must be >= 1, got {lot.reinit_draws}")
    if lot.target_pm is not None and not 0 < lot.target_pm <= 100:
        raise ValueError(f"--lottery.target_pm is a percentage in (0, 100], got {lot.target_pm}")
    check_controls(lot.controls)


class IMP:
    """The IMP experiment of `cfg` on `backend`, stored in `store`."""

    def __init__(self, cfg: ExperimentConfig, backend: Backend, store: RunStore,
                 log: Callable[[str], None] = print):
        check_lottery(cfg)
        self.cfg, self.backend, self.store, self.log = cfg, backend, store, log
        template = backend.build(cfg.seed)
        self.plan = PrunePlan.for_model(template, cfg.prune)
        self.schedule = levels_to_run(cfg, self.plan)
        self.k = backend.rewind_step()
        self._cache: dict[tuple[int, int], Mask] = {}

    # -- per-replicate state on disk -----------------------------------------------------------------
    def _seed(self, replicate: int) -> int:
        return self.cfg.seed + replicate

    def _init_state(self, replicate: int) -> dict[str, torch.Tensor]:
        path = self.store.rep_dir(replicate) / "init.safetensors"
        if not path.exists():
            save_weights(self.backend.build(self._seed(replicate)), path)
        return load_weights(path)

    def _rewind_state(self, replicate: int) -> dict[str, torch.Tensor]:
        if self.k == 0:
            return self._init_state(replicate)
        path = self.store.rep_dir(replicate) / "rewind.safetensors"
        if not path.exists():
            raise RuntimeError(f"{path} is missing although level 0 finished; delete "
                               f"{self.store.level_dir(replicate, 0)} to retrain the dense network")
        return load_weights(path)

    def mask(self, replicate: int, level: int) -> Mask:
        """The level's mask, computed once from the previous ticket and kept in the run folder."""
        if (replicate, level) in self._cache:
            return self._cache[replicate, level]
        path = self.store.level_dir(replicate, level) / "mask.safetensors"
        template = self.backend.build(self._seed(replicate))
        if path.exists():
            mask = Mask.load(path, template)
        elif level == 0:
            mask = Mask.ones_like(template, list(self.plan.sizes))
        else:
            # Iterative: prune the previous level's trained ticket. One-shot: prune the trained dense network
            # straight to this level's sparsity (the same per-layer counts as iterative pruning reaches).
            source = 0 if self.cfg.lottery.one_shot else level - 1
            final = load_weights(self.store.unit_dir(Unit(replicate, source, "ticket")) / "final.safetensors")
            base = self.mask(replicate, source)
            mask = prune(final, base, self.plan, rounds=level - source, score=self.cfg.prune.score,
                         generator=torch.Generator().manual_seed(self._seed(replicate) * 1009 + level))
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            mask.save(path)
        self._cache[replicate, level] = mask
        return mask

    # -- a level's trainings -------------------------------------------------------------------------
    def jobs(self, level: int) -> list[Job]:
        lot, out = self.cfg.lottery, []
        for r in range(lot.replicates):
            for branch in branch_names(level, lot.controls, lot.reinit_draws):
                unit = Unit(r, level, branch)
                if self.store.is_done(unit):
                    continue
                model = self.backend.build(self._seed(r))
                if level == 0:
                    model.load_state_dict(self._init_state(r))
                    mask, start = self.mask(r, 0), 0
                    save_at = {}
                    if self.k > 0:
                        rewind_path = self.store.rep_dir(r) / "rewind.safetensors"
                        save_at[self.k] = lambda step, m, p=rewind_path: save_weights(m, p)
                else:
                    mask = branch_start(branch, model=model, rewind_state=self._rewind_state(r),
                                        mask=self.mask(r, level), build=self.backend.build,
                                        seed=self.cfg.seed, replicate=r, level=level)
                    start, save_at = self.k, {}
                    if branch != "ticket":
                        udir = self.store.unit_dir(unit)
                        udir.mkdir(parents=True, exist_ok=True)
                        if branch == "random_prune" and not (udir / "mask.safetensors").exists():
                            mask.save(udir / "mask.safetensors")
                hooks = Hooks(save_at=save_at, resume_path=self.store.unit_dir(unit) / "resume.pt",
                              checkpoint_seconds=self.cfg.checkpoint_seconds)
                out.append(Job(unit, model, mask, start, hooks))
        return out

    def run(self) -> RunStore:
        """Train every level not yet finished, printing each level's results as it completes."""
        from lth.lottery.results import format_level, level_rows

        self.log(f"run folder: {self.store.root}")
        # The levels this request runs, for readers of the folder (the report): with a target P_m only the
        # model's layer sizes say how many there are.
        write_json(self.store.root / PLAN_FILE, {"pm_percent": self.schedule})  # P_m of levels 0..L
        for level, pm in enumerate(self.schedule):
            jobs = self.jobs(level)
            if jobs:
                self.backend.train(jobs, self.store)
            rows = level_rows(self.store.summaries(), level)
            self.log(format_level(rows, header=level == 0))
        return self.store


def unit_summary(job: Job, summary: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The JSON record of one finished training."""
    return {"replicate": job.unit.replicate, "level": job.unit.level, "branch": job.unit.branch,
            "remaining_percent": 100 * job.mask.density(), "start_step": job.start_step,
            **summary, "seconds": round(seconds, 3)}


def finish(job: Job, store: RunStore, metrics: list[dict[str, float]], summary: dict[str, Any],
           seconds: float) -> None:
    """Record a finished training; the ticket keeps its final weights for the next level's pruning."""
    if job.unit.branch == "ticket":
        save_weights(job.model, store.unit_dir(job.unit) / "final.safetensors")
    store.write_result(job.unit, metrics, unit_summary(job, summary, seconds))
