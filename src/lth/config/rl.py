"""The config of `lth rl`: IMP on a PPO agent (the environment, the agent, pruning and the lottery)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from lth.config.fields import _local, _positive_finite, parse_steps
from lth.config.sections import (
    ComputeConfig,
    LotteryConfig,
    PruneConfig,
    check_sections,
)
from lth.errors import ConfigError


@dataclass(frozen=True)
class EnvConfig:
    """A Gymnasium environment, and how the agent is evaluated on it (`lth rl`)."""

    id: str = "CartPole-v1"
    """A Gymnasium environment id with discrete or continuous actions, e.g. CartPole-v1, Acrobot-v1."""
    n_envs: int = 8
    """Environments stepped in parallel while training (one rollout is n_envs x agent.n_steps steps)."""
    eval_every: str = "10240it"
    """Evaluate the agent every this many environment steps (a multiple of the rollout), and at the end."""
    eval_episodes: int = 10
    """Evaluation episodes, with the seeds eval_seed, eval_seed + 1, ...: every evaluation of every branch
    plays the same starts, with the greedy (deterministic) policy."""
    eval_seed: int = 1000
    """First seed of the evaluation episodes (training episodes are seeded from the replicate's data seed)."""
    solved: float | None = None
    """Mean evaluation return at which the environment counts as solved (None: Gymnasium's reward_threshold
    of the environment, 475 for CartPole-v1 and -100 for Acrobot-v1)."""

    def check(self) -> None:
        if not self.id.strip():
            raise ConfigError("--env.id must name a Gymnasium environment, e.g. CartPole-v1")
        if self.n_envs < 1:
            raise ConfigError(f"--env.n_envs must be >= 1, got {self.n_envs}")
        if self.eval_episodes < 1:
            raise ConfigError(f"--env.eval_episodes must be >= 1, got {self.eval_episodes}")
        if parse_steps(self.eval_every, "--env.eval_every")[1] != "it":
            raise ConfigError(f"--env.eval_every counts environment steps: write it as e.g. 10000it, got "
                              f"{self.eval_every!r}")
        if self.solved is not None and not math.isfinite(self.solved):
            raise ConfigError(f"--env.solved must be a finite return, got {self.solved}")


@dataclass(frozen=True)
class PpoConfig:
    """PPO (Stable-Baselines3) and its actor-critic network. The defaults are RL Baselines3 Zoo's tuned
    hyperparameters for CartPole-v1 (lr and clip range decaying linearly; 8 environments, n_steps 32)."""

    budget: str = "102400it"
    """Training length in environment steps, summed over the n_envs environments (a multiple of the rollout:
    the zoo's 1e5 rounded up to 400 rollouts)."""
    n_steps: int = 32
    """Steps per environment per rollout."""
    batch_size: int = 256
    n_epochs: int = 20
    """Passes over each rollout."""
    lr: float = 1e-3
    schedule: Literal["linear", "constant"] = "linear"
    """linear: the learning rate and the clip range decay linearly to 0 over the budget."""
    clip_range: float = 0.2
    gamma: float = 0.98
    gae_lambda: float = 0.8
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    hidden: tuple[int, ...] = (64, 64)
    """Hidden widths of the policy network and, separately, of the value network."""
    activation: Literal["tanh", "relu"] = "tanh"

    def check(self) -> None:
        if parse_steps(self.budget, "--agent.budget")[1] != "it" or parse_steps(self.budget, "--agent.budget")[0] < 1:
            raise ConfigError(f"--agent.budget counts environment steps: write it as e.g. 100000it, got "
                              f"{self.budget!r}")
        for name in ("n_steps", "batch_size", "n_epochs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--agent.{name} must be >= 1, got {getattr(self, name)}")
        _positive_finite(self.lr, "--agent.lr")
        _positive_finite(self.clip_range, "--agent.clip_range")
        _positive_finite(self.max_grad_norm, "--agent.max_grad_norm")
        for name in ("ent_coef", "vf_coef"):
            _positive_finite(getattr(self, name), f"--agent.{name}", zero_ok=True)
        for name in ("gamma", "gae_lambda"):
            if not 0 < getattr(self, name) <= 1:
                raise ConfigError(f"--agent.{name} must be in (0, 1], got {getattr(self, name)}")
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ConfigError(f"--agent.hidden must be one or more positive widths, got {self.hidden}")


@dataclass(frozen=True)
class RlConfig:
    """IMP on the policy and value networks of a PPO agent (`lth rl`): the agent trains in Stable-Baselines3's
    own loop, connected through find_tickets' API for foreign loops. Late rewinding is the default."""

    experiment: ClassVar[str] = "rl"

    env: EnvConfig = field(default_factory=EnvConfig)
    agent: PpoConfig = field(default_factory=PpoConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    lottery: LotteryConfig = field(default_factory=lambda: LotteryConfig(rewind="5120it"))
    seed: int = 0
    """Seed of the initialization (replicate r uses seed + r); training episodes use data_seed + r."""
    data_seed: int = 0
    """Seed of the training environments and of PPO's sampling and minibatch order."""
    compute: ComputeConfig = _local(ComputeConfig())
    preset: str = _local("")
    device: str = _local("cpu")
    """cpu (PPO on small networks is fastest on the CPU)."""
    out_dir: str = _local("runs")
    checkpoint_seconds: float = _local(30.0)
    """Save resumable agent state at a rollout boundary once this much time passed since the last."""

    def folder_mode(self) -> str:
        return "rl" if self.lottery.resets else f"rl-rewind{self.lottery.rewind}"

    def base_name(self) -> str:
        return f"ppo_{self.env.id}"

    def rollout(self) -> int:
        return self.env.n_envs * self.agent.n_steps

    def check(self) -> None:
        check_sections(self)
        if self.device != "cpu":
            raise ConfigError(f"--device {self.device}: lth rl trains on the CPU only (use --device cpu)")
        rollout, budget = self.rollout(), parse_steps(self.agent.budget, "--agent.budget")[0]
        what = f"a multiple of the rollout (env.n_envs {self.env.n_envs} x agent.n_steps {self.agent.n_steps} = " \
               f"{rollout} steps)"
        if budget % rollout:
            raise ConfigError(f"--agent.budget {self.agent.budget} must be {what}, e.g. "
                              f"{budget // rollout * rollout or rollout}it")
        every = parse_steps(self.env.eval_every, "--env.eval_every")[0]
        if every < 1 or every % rollout:
            raise ConfigError(f"--env.eval_every {self.env.eval_every} must be {what}, e.g. "
                              f"{max(1, every // rollout) * rollout}it")
        k, unit = parse_steps(self.lottery.rewind, "--lottery.rewind")
        if unit != "it" and k:
            raise ConfigError(f"--lottery.rewind counts environment steps: write it as e.g. {rollout * 20}it")
        if k % rollout or k >= budget:
            raise ConfigError(f"--lottery.rewind {self.lottery.rewind} must be {what} and below the budget of "
                              f"{budget} steps, e.g. {max(1, budget // 20 // rollout) * rollout}it (about 5% of "
                              "training), or 0it to reset to θ_0")
        if self.agent.batch_size > rollout:
            raise ConfigError(f"--agent.batch_size {self.agent.batch_size} is larger than one rollout ({rollout} "
                              "steps); use at most that")
