"""Typed experiment configuration.

Each experiment's config is a tree of frozen dataclasses, and that tree is the single source of truth: the
CLI flags are generated from it (tyro), values from files and `override` are checked against its types, it
is printed and saved as JSON, and its hash names the run folder.

- Sections (`DataConfig`, `TrainConfig`, ...) check their own values (`check`): bad input is refused before
  any work starts, with a message that names the flag and the fix.
- The hash covers only fields that differ from their defaults, plus the experiment's name. Adding a field
  with a default therefore leaves every existing run's hash as it is; changing a default of a hashed field
  would silently change what old hashes mean, so never do that: add a field instead.
- Fields marked `_local` (where data and runs live, the device, the `compute` section) say how or where to
  compute, not what; fields marked `_extent` say how much of an experiment to run. Neither is hashed.

This module imports no torch: `lth --help` and `lth presets` stay fast.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from lth.errors import ConfigError
from lth.names import CONTROLS, is_reset

T = TypeVar("T")

STEP_HELP = "a step count like '500it' or '2ep'"


def _local(default: Any, doc: str = "") -> Any:
    """A field that says where or how to compute, not what: it is left out of the run hash."""
    return field(default=default, metadata={"hash": False, "doc": doc})


def _extent(default: Any) -> Any:
    """A field that says how much of an experiment to run (levels, replicates, controls), not what any one
    training computes: every seed derives from (seed, replicate, level, branch). It is left out of the run
    hash, so asking for more levels, replicates or controls extends the existing run instead of redoing it."""
    return field(default=default, metadata={"hash": False})


def parse_steps(text: str, what: str) -> tuple[int, str]:
    """(count, unit) of a step count `500it` / `2ep`; a malformed one is a ConfigError naming `what`."""
    import re

    m = re.match(r"^\s*(\d+)\s*(it|ep)\s*$", str(text))
    if not m:
        raise ConfigError(f"{what} must be {STEP_HELP}, got {text!r}")
    return int(m.group(1)), m.group(2)


def _positive_finite(value: float, flag: str, zero_ok: bool = False) -> None:
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        kind = "a finite number >= 0" if zero_ok else "a finite number > 0"
        raise ConfigError(f"{flag} must be {kind}, got {value}")


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, and how its training set is split into train and validation."""

    dataset: str = "mnist1d"
    """mnist1d | mnist | fashion_mnist | cifar10 | cifar100 | mnist1d_seq | mnist_rows | chars | synthetic
    (`lth models` lists them)"""
    val_size: int | None = None
    """Examples held out of the training set for validation (None: the dataset's default, 5000 for
    MNIST/CIFAR, 500 for MNIST-1D). The test set is never used to select anything."""
    split_seed: int = 0
    """Seed of the train/validation split."""
    augment: bool = False
    """Random 4-pixel-pad crop and horizontal flip (CIFAR), done on batched tensors on the device."""
    data_dir: str | None = _local(None)
    """Folder with the dataset files (default: $LTH_DATA, else ~/.cache/lth)."""
    download: bool = _local(True)
    """Download missing files (with checksum verification) when online."""
    context: int = 0
    """Context length T of a language-modelling dataset: characters per example (0: the dataset's
    default, 64 for chars)."""

    def check(self) -> None:
        if self.context < 0:
            raise ConfigError(f"--data.context must be >= 0 (0: the dataset's default), got {self.context}")
        if self.val_size is not None and self.val_size < 1:
            raise ConfigError(f"--data.val_size must be at least 1 (the early stop is chosen on validation "
                              f"loss; leave it unset for the dataset's default), got {self.val_size}")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and initialization."""

    name: str = "mnist1d_mlp"
    """A name from `lth models`: lenet_300_100, conv2, conv4, conv6, vgg11/16/19, resnet20/32/56,
    mnist1d_mlp, mnist1d_cnn, lstm, transformer."""
    init: str = "glorot_normal"
    """glorot_normal | glorot_uniform | kaiming_normal | kaiming_uniform | signed_kaiming_constant"""
    hidden: tuple[int, ...] = ()
    """Hidden widths of an MLP (empty: the model's default, e.g. 300 100 for LeNet)."""
    width: int = 0
    """Channel width of a ResNet's first stage, or the width of an LSTM or Transformer (0: the model's
    default: 16, 128, 128)."""
    dropout: float = 0.0
    """Dropout rate before each hidden fully connected layer (Conv-2/4/6 and MLPs)."""
    layers: int = 0
    """Depth of a sequence model: LSTM layers or Transformer blocks (0: the model's default, 1 and 2)."""
    heads: int = 0
    """Attention heads of a Transformer (0: the model's default, 4)."""

    def check(self) -> None:
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"--model.dropout must be in [0, 1), got {self.dropout}")
        if any(h < 1 for h in self.hidden):
            raise ConfigError(f"--model.hidden must be positive widths, got {self.hidden}")
        for name in ("width", "layers", "heads"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--model.{name} must be >= 0 (0: the model's default), got {getattr(self, name)}")


@dataclass(frozen=True)
class TrainConfig:
    """Optimizer, schedule, budget and evaluation. Step counts are written `500it` or `2ep`."""

    optimizer: Literal["sgd", "adam", "adamw"] = "adam"
    lr: float = 2e-2
    momentum: float = 0.9
    """SGD momentum."""
    nesterov: bool = False
    weight_decay: float = 0.0
    batch_size: int = 100
    budget: str = "1500it"
    """Training length: `50000it` or `160ep` (epochs drop the last partial batch)."""
    warmup: str = "0it"
    """Linear learning-rate warmup from 0."""
    schedule: Literal["constant", "multistep", "cosine"] = "constant"
    milestones: tuple[str, ...] = ()
    """Multistep: steps where the learning rate is multiplied by `gamma`, e.g. 80ep 120ep."""
    gamma: float = 0.1
    eval_every: str = "100it"
    """Evaluate validation and test loss/accuracy this often (and at the end)."""
    data_seed: int = 0
    """Seed of the data order (and augmentation); the initialization has its own seed."""

    def check(self) -> None:
        _positive_finite(self.lr, "--train.lr")
        _positive_finite(self.weight_decay, "--train.weight_decay", zero_ok=True)
        if not (math.isfinite(self.momentum) and 0 <= self.momentum < 1):
            raise ConfigError(f"--train.momentum must be in [0, 1), got {self.momentum}")
        if not (math.isfinite(self.gamma) and 0 < self.gamma <= 1):
            raise ConfigError(f"--train.gamma (the multistep factor) must be in (0, 1], got {self.gamma}")
        if self.batch_size < 1:
            raise ConfigError(f"--train.batch_size must be >= 1, got {self.batch_size}")
        if parse_steps(self.budget, "--train.budget")[0] == 0:
            raise ConfigError("--train.budget must be at least one step (e.g. 1500it or 2ep), got "
                              f"{self.budget!r}")
        parse_steps(self.warmup, "--train.warmup")
        if parse_steps(self.eval_every, "--train.eval_every")[0] == 0:
            raise ConfigError(f"--train.eval_every must be at least 1it, got {self.eval_every!r}")
        for m in self.milestones:
            parse_steps(m, "--train.milestones")
        if self.schedule == "multistep" and not self.milestones:
            raise ConfigError("--train.schedule multistep needs --train.milestones (e.g. 80ep 120ep)")
        if self.nesterov and self.optimizer != "sgd":
            raise ConfigError(f"--train.nesterov applies to sgd only, not {self.optimizer}")


@dataclass(frozen=True)
class PruneConfig:
    """How a level's mask is chosen: a criterion scores the weights, then layer-wise or global selection
    keeps the highest scores."""

    strategy: Literal["layerwise", "global"] = "layerwise"
    rate: float = 0.2
    """Fraction of the *remaining* weights removed per level (fully connected layers, or all with global)."""
    conv_rate: float | None = None
    """Layer-wise rate for convolutions (None: same as `rate`)."""
    output_rate: float | None = None
    """Layer-wise rate for the output layer (None: half of `rate`, as in Frankle & Carbin)."""
    exclude: tuple[str, ...] = ()
    """Parameter-name patterns (fnmatch) never pruned, e.g. 'fc*' or '*shortcut*'."""
    criterion: str = "magnitude"
    """What is kept: a name from the criteria registry (`lth models` lists them), e.g. magnitude (large_final),
    magnitude_increase, movement, random."""
    embedding_rate: float | None = None
    """Layer-wise rate for embedding matrices (None: same as `rate`)."""

    def check(self) -> None:
        for name in ("rate", "conv_rate", "output_rate", "embedding_rate"):
            rate = getattr(self, name)
            if rate is not None and not 0 < rate < 1:
                raise ConfigError(f"--prune.{name} must be a fraction in (0, 1) of the remaining weights, "
                                  f"got {rate}")


@dataclass(frozen=True)
class LotteryConfig:
    """Iterative magnitude pruning and its controls."""

    levels: int = _extent(12)
    """Pruning levels after the dense level 0."""
    target_pm: float | None = _extent(None)
    """Stop once P_m (percent of prunable weights remaining) is at or below this."""
    rewind: str = "0it"
    """Rewind survivors to θ_k: `0it` resets to the original initialization, `500it` or `2ep` rewinds."""
    one_shot: bool = False
    """Prune the trained dense network straight to each level's P_m (instead of iteratively)."""
    controls: tuple[str, ...] = _extent(CONTROLS)
    """reinit: same mask, fresh initialization. random_prune: random mask, same per-layer sparsity."""
    reinit_draws: int = _extent(1)
    """Independent reinitializations per level."""
    replicates: int = _extent(1)
    """Independent seeds (initialization and data order) of the whole experiment."""

    def check(self) -> None:
        if self.levels < 0:
            raise ConfigError(f"--lottery.levels must be >= 0, got {self.levels}")
        if self.replicates < 1:
            raise ConfigError(f"--lottery.replicates must be >= 1, got {self.replicates}")
        if self.reinit_draws < 1:
            raise ConfigError(f"--lottery.reinit_draws must be >= 1, got {self.reinit_draws}")
        if self.target_pm is not None and not (math.isfinite(self.target_pm) and 0 < self.target_pm <= 100):
            raise ConfigError(f"--lottery.target_pm is a percentage in (0, 100], got {self.target_pm}")
        parse_steps(self.rewind, "--lottery.rewind")
        unknown = [c for c in self.controls if c not in CONTROLS]
        if unknown:
            raise ConfigError(f"unknown control(s) {unknown}; choose from {', '.join(CONTROLS)} "
                              "(e.g. --lottery.controls reinit random_prune, or an empty list for none)")
        if len(set(self.controls)) != len(self.controls):
            raise ConfigError(f"--lottery.controls names a control twice: {self.controls}")

    @property
    def resets(self) -> bool:
        return is_reset(self.rewind)


@dataclass(frozen=True)
class ComputeConfig:
    """How to compute, not what. Recorded in config.json and in every checkpoint, but not hashed: these
    settings only change how sums are rounded, which can change the last bits of results. Resuming with
    other settings works, with a warning that the run will not continue bit for bit."""

    kernels: Literal["auto", "onednn", "torch"] = "auto"
    """Fully connected products on the CPU: auto (oneDNN where present and verified), onednn (require it),
    torch (PyTorch's default kernels)."""
    chain: bool = True
    """Train lth's MLPs on the CPU through the hand-written forward and backward pass (lth.train.chain)."""
    batch: str = "auto"
    """Networks trained in one batched pass (vmap): auto (batched on CUDA, one at a time on the CPU), 0 (one
    at a time), or N (at most N per pass on any device)."""
    compile: bool = False
    """torch.compile the model's forward pass (did not pay on the CPU; see benchmarks)."""
    amp: bool = True
    """bfloat16 autocast on CUDA (ignored on the CPU)."""
    threads: int = 0
    """CPU threads per training (0: leave torch's default, normally one per core)."""

    def check(self) -> None:
        if self.batch != "auto" and not (self.batch.isdigit()):
            raise ConfigError(f"--compute.batch must be auto, 0 (one network at a time) or a number N of "
                              f"networks per pass, got {self.batch!r}")
        if self.threads < 0:
            raise ConfigError(f"--compute.threads must be >= 0 (0: torch's default), got {self.threads}")
        cores = os.cpu_count() or 1
        if self.threads > cores:  # more threads than cores only slows training down (and torch crashes on huge counts)
            raise ConfigError(f"--compute.threads {self.threads} is more than this machine's {cores} cores; use "
                              f"1 to {cores}, or 0 for torch's default")

    def batch_limit(self, device_type: str) -> int:
        """Most networks per pass on a device of this type; 0 = one at a time."""
        if self.batch == "auto":
            return 16 if device_type == "cuda" else 0
        return int(self.batch)


def check_sections(cfg: Any) -> None:
    """What every experiment's config checks: every value's type, each section's own `check`, and the
    checkpoint interval."""
    check_types(cfg)
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if is_dataclass(value) and hasattr(value, "check"):
            value.check()
    _positive_finite(cfg.checkpoint_seconds, "--checkpoint_seconds", zero_ok=True)


@dataclass(frozen=True)
class ExecutorConfig:
    """Who runs the trainings: this process, or Ray tasks on a local Ray instance or an existing cluster. Like
    `compute`, this says how and where, not what: recorded, not hashed. On the CPU a Ray run's numbers equal a
    local run's with the same threads per training."""

    kind: Literal["local", "ray"] = "local"
    """local: this process, one training after another. ray: Ray tasks, everything ready runs in parallel
    (`pip install 'lth[ray]'`). `--executor ray` is short for `--executor.kind ray`."""
    address: str = ""
    """The Ray cluster to join: HOST:PORT of a head node started with `ray start --head`, or `auto` for the
    cluster `ray start` made on this machine. Empty: start a local Ray instance for this run."""
    cpus_per_task: float = 1.0
    """CPUs Ray reserves for each training; on the CPU it is also the training's thread count (unless
    --compute.threads says otherwise)."""
    gpus_per_task: float = 0.0
    """GPUs Ray reserves for each training: 1, or a fraction to share one (0.25 packs four trainings onto a
    GPU). 0: trainings run on the CPU."""
    max_retries: int = 3
    """Times Ray reruns a task whose worker died; a rerun training resumes from its last checkpoint."""

    def check(self) -> None:
        if self.address and self.kind != "ray":
            raise ConfigError(f"--executor.address {self.address} joins a Ray cluster: add --executor ray")
        _positive_finite(self.cpus_per_task, "--executor.cpus_per_task")
        _positive_finite(self.gpus_per_task, "--executor.gpus_per_task", zero_ok=True)
        if self.gpus_per_task > 1 and not float(self.gpus_per_task).is_integer():
            raise ConfigError(f"--executor.gpus_per_task above 1 must be a whole number of GPUs (Ray shares a GPU "
                              f"only below 1), got {self.gpus_per_task}")
        if self.max_retries < 0:
            raise ConfigError(f"--executor.max_retries must be >= 0, got {self.max_retries}")

    def threads(self, compute: "ComputeConfig") -> int:
        """CPU threads of each training on a Ray worker: --compute.threads if given, else cpus_per_task."""
        return compute.threads or max(1, int(self.cpus_per_task))


LOGGERS = ("tensorboard",)
"""Experiment trackers that `--log` can add beside the CSV/JSON files."""


@dataclass(frozen=True)
class RunConfig:
    """What every experiment has: data, model, training, compute settings, the seed, and where it runs.

    `lth train` (one dense training) uses exactly this; other experiments add their sections."""

    experiment: ClassVar[str] = "train"

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    """Seed of the initialization (replicate r uses seed + r, and data_seed + r)."""
    compute: ComputeConfig = _local(ComputeConfig())
    """Kernels, batching, compilation, threads: recorded, not hashed."""
    preset: str = _local("")
    """The preset this config started from (informational)."""
    device: str = _local("auto")
    """auto | cpu | cuda | cuda:N"""
    out_dir: str = _local("runs")
    """Folder that holds run folders."""
    checkpoint_seconds: float = _local(30.0)
    """Save resumable training state at an evaluation point once this much time passed since the last."""
    executor: ExecutorConfig = _local(ExecutorConfig())
    """Who runs the trainings (local or ray) and with what resources: recorded, not hashed."""
    log: tuple[str, ...] = _local(())
    """Also write every training's curves for an experiment tracker: tensorboard (event files in
    <run>/tensorboard/; `pip install 'lth[tensorboard]'`). The CSV and JSON files stay the record."""

    def folder_mode(self) -> str:
        """The middle part of the run folder's name: the experiment, e.g. `train`."""
        return self.experiment

    def check(self) -> None:
        """Every value's type (a config built in Python skips the flags' and files' checks), every section's own
        checks, then the checks across sections that need no data or model."""
        check_sections(self)
        if not str(self.device).strip():
            raise ConfigError("--device must be auto, cpu, cuda or cuda:N, got an empty string")
        unknown = [name for name in self.log if name not in LOGGERS]
        if unknown:
            raise ConfigError(f"--log {' '.join(unknown)}: unknown; choose from {', '.join(LOGGERS)} (e.g. --log "
                              "tensorboard)")
        if self.executor.kind == "ray" and self.executor.gpus_per_task == 0 and str(self.device).startswith("cuda"):
            raise ConfigError(f"--device {self.device} with --executor ray needs --executor.gpus_per_task > 0, so "
                              "that Ray gives each training a GPU (e.g. 1, or 0.25 to share one by four)")


@dataclass(frozen=True)
class ImpConfig(RunConfig):
    """Iterative magnitude pruning with its controls (`lth run`)."""

    experiment: ClassVar[str] = "imp"

    prune: PruneConfig = field(default_factory=PruneConfig)
    lottery: LotteryConfig = field(default_factory=LotteryConfig)

    def folder_mode(self) -> str:
        """`imp`, `oneshot`, with `-rewind500it` when rewinding."""
        name = "oneshot" if self.lottery.one_shot else "imp"
        return name if self.lottery.resets else f"{name}-rewind{self.lottery.rewind}"


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


ExperimentConfig = ImpConfig
"""The name of the IMP config in lth 0.1, kept for code written against it."""


PAI_ABLATIONS = ("shuffle", "reinit", "invert")
"""Frankle et al. 2021's sanity checks: the mask permuted within each layer, the same mask on a new θ_0, and
the lowest-scoring weights kept instead of the highest."""


@dataclass(frozen=True)
class PaiSection:
    """Pruning at initialization: which criteria, to which P_m, and the ablations that test them.

    The target P_m are IMP's: level L keeps what L rounds of `--prune.rate` (layer-wise or global, as the
    prune section says) would keep, so a level has the P_m of the same level of an IMP run."""

    criteria: tuple[str, ...] = _extent(("snip", "grasp", "synflow", "magnitude_init", "random", "smart_ratio"))
    """Criteria from the registry (`lth models`), one training per level each."""
    levels: tuple[int, ...] = _extent((3, 6, 9, 12))
    """Levels of the IMP schedule to prune to (P_m printed with the run)."""
    scope: Literal["global", "layerwise"] = "global"
    """global: the top scores over all pruned layers (the papers' choice); layerwise: IMP's per-layer counts."""
    ablations: tuple[str, ...] = _extent(())
    """shuffle | reinit | invert, run for every criterion except random and smart_ratio (random positions)."""
    ablation_levels: tuple[int, ...] = _extent(())
    """Levels that also run the ablations (empty: all of `levels`)."""
    batches: int = 0
    """Batches of --train.batch_size that SNIP and GraSP score on (0: enough for 10 examples per class, the
    Synaptic-Flow code's default)."""
    replicates: int = _extent(1)
    """Independent seeds (θ_0 and data order), as for IMP."""

    def check(self) -> None:
        if not self.criteria:
            raise ConfigError("--pai.criteria is empty: name at least one criterion (e.g. snip synflow random)")
        if len(set(self.criteria)) != len(self.criteria):
            raise ConfigError(f"--pai.criteria names a criterion twice: {self.criteria}")
        if not self.levels or any(lv < 1 for lv in self.levels) or len(set(self.levels)) != len(self.levels):
            raise ConfigError(f"--pai.levels must be distinct levels >= 1 of the IMP schedule (e.g. 3 6 9 12), got "
                              f"{self.levels}")
        unknown = [a for a in self.ablations if a not in PAI_ABLATIONS]
        if unknown:
            raise ConfigError(f"unknown ablation(s) {unknown}; choose from {', '.join(PAI_ABLATIONS)} "
                              "(--pai.ablations shuffle invert)")
        stray = [lv for lv in self.ablation_levels if lv not in self.levels]
        if stray:
            raise ConfigError(f"--pai.ablation_levels {stray} are not in --pai.levels {self.levels}; ablations run at "
                              "levels that are pruned anyway")
        if self.batches < 0:
            raise ConfigError(f"--pai.batches must be >= 0 (0: 10 examples per class), got {self.batches}")
        if self.replicates < 1:
            raise ConfigError(f"--pai.replicates must be >= 1, got {self.replicates}")


@dataclass(frozen=True)
class PruneAtInitConfig(RunConfig):
    """Pruning at initialization (`lth prune_at_init`): each criterion prunes θ_0 once to each level's P_m,
    then the subnetwork trains like any other; level 0 is the dense network."""

    experiment: ClassVar[str] = "prune_at_init"

    prune: PruneConfig = field(default_factory=PruneConfig)
    """The IMP schedule that sets the target P_m (rate, output_rate, strategy, exclude); the criterion is
    --pai.criteria's."""
    pai: PaiSection = field(default_factory=PaiSection)


SUPERMASK_METHODS = ("edge_popup", "bernoulli")


@dataclass(frozen=True)
class SupermaskSection:
    """Strong tickets: masks learned on frozen random weights (no weight is trained)."""

    k: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
    """Kept fractions, one level each: edge-popup keeps exactly round(k·n) weights of every layer (k = 0.5
    keeps half; k is what is *kept*, not removed); the Bernoulli supermask starts with keep probability k."""
    methods: tuple[str, ...] = _extent(("edge_popup",))
    """edge_popup (Ramanujan et al. 2020) and/or bernoulli (Zhou et al. 2019), one training per k each; none
    runs only the dense network, the untrained one and the large_final masks."""
    signed_constant: bool = False
    """Bernoulli: replace each weight by sign(θ_0)·std of its layer's θ_0 (Zhou et al.'s signed constant).
    For edge-popup use --model.init signed_kaiming_constant."""
    dense_lr: float | None = None
    """Learning rate of the dense network's (weight) training at level 0 (None: --train.lr). Mask logits may
    want a rate that would make weights diverge."""
    replicates: int = _extent(1)
    """Independent seeds (θ_0, scores and data order)."""

    def check(self) -> None:
        if not self.k:
            raise ConfigError("--supermask.k is empty: give kept fractions in (0, 1], e.g. 0.1 0.3 0.5")
        bad = [k for k in self.k if not (math.isfinite(k) and 0 < k <= 1)]
        if bad:
            raise ConfigError(f"--supermask.k must be kept fractions in (0, 1] (0.5 keeps half of each layer's "
                              f"weights), got {bad}")
        if len(set(self.k)) != len(self.k):
            raise ConfigError(f"--supermask.k names a fraction twice: {self.k}")
        unknown = [m for m in self.methods if m not in SUPERMASK_METHODS]
        if unknown or len(set(self.methods)) != len(self.methods):
            raise ConfigError(f"--supermask.methods must name some of {', '.join(SUPERMASK_METHODS)} (or none, for "
                              f"the dense, untrained and large_final networks only), got {self.methods}")
        if "bernoulli" in self.methods and 1.0 in self.k:
            raise ConfigError("--supermask.k 1 with the bernoulli method: k is its initial keep probability, which "
                              "must be below 1 (its mask logits would be infinite); drop 1 from --supermask.k")
        if self.replicates < 1:
            raise ConfigError(f"--supermask.replicates must be >= 1, got {self.replicates}")
        if self.dense_lr is not None:
            _positive_finite(self.dense_lr, "--supermask.dense_lr")


@dataclass(frozen=True)
class SupermaskConfig(RunConfig):
    """Strong tickets (`lth supermask`): level 0 holds the dense network trained as usual and the untrained
    θ_0; level i, for the i-th k, a mask learned on the frozen θ_0 by each method, and the magnitude mask of
    the trained dense network applied to the untrained θ_0 (Zhou et al.'s large_final supermask)."""

    experiment: ClassVar[str] = "supermask"

    supermask: SupermaskSection = field(default_factory=SupermaskSection)


# --------------------------------------------------------------------------------------------------------
# dict round trip with type checks, overrides, files

def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain JSON-able dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


_RENAMED = {("prune", "score"): "criterion"}
"""Keys of earlier versions read under their new names (a config.json or YAML file written for lth 0.1)."""
_MOVED = {("train", "amp"): ("compute", "amp")}


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(map(str, typing.get_args(tp)))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"a list ({_type_name(typing.get_args(tp)[0])} each)"
    return {int: "a whole number", float: "a number", str: "a string", bool: "true or false",
            type(None): "null"}.get(tp, getattr(tp, "__name__", str(tp)))


def _check_value(value: Any, tp: Any, key: str) -> Any:
    """`value` as type `tp`, or a ConfigError naming the key, the expected type and the value."""
    origin = typing.get_origin(tp)
    bad = ConfigError(f"config key {key} must be {_type_name(tp)}, got {value!r}")
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        for option in typing.get_args(tp):
            try:
                return _check_value(value, option, key)
            except ConfigError:
                continue
        raise bad
    if origin is Literal:
        if value in typing.get_args(tp) and type(value) is not bool:
            return value
        raise ConfigError(f"config key {key} must be one of {', '.join(map(str, typing.get_args(tp)))}; "
                          f"got {value!r}")
    if origin is tuple:
        items = value if isinstance(value, (list, tuple)) else [value]
        return tuple(_check_value(v, typing.get_args(tp)[0], key) for v in items)
    if tp is type(None):
        if value is None:
            return None
        raise bad
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise bad
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise bad from None
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    return value


def check_types(cfg: Any, where: str = "") -> None:
    """Refuse a config whose values do not have their fields' types, naming the key: a config built in Python
    (`TrainConfig(lr="abc")`, `ImpConfig(seed=1.7)`) gets the same checks as flags and files. A whole number
    where a number is expected is fine; anything that would need converting is not."""
    hints = typing.get_type_hints(type(cfg))
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if is_dataclass(value):
            check_types(value, f"{where}{f.name}.")
        elif not _unconverted(_check_value(value, hints[f.name], where + f.name), value):
            raise ConfigError(f"config key {where}{f.name} must be {_type_name(hints[f.name])}, got {value!r}")


def _unconverted(checked: Any, value: Any) -> bool:
    """Whether `value` already is what _check_value made of it (an int standing for a float counts)."""
    if isinstance(checked, tuple) and isinstance(value, tuple):
        return len(checked) == len(value) and all(map(_unconverted, checked, value))
    return type(checked) is type(value) or (type(checked) is float and type(value) is int)


def from_dict(cls: type[T], data: dict[str, Any], *, base: T | None = None, where: str = "") -> T:
    """Build `cls` from a (possibly partial) nested dict, on top of `base`, checking every value's type.

    Unknown keys are an error that names the key and the known ones: a typo in a YAML file must not be
    silently ignored. Keys of earlier versions are read under their new names.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"config {where.rstrip('.') or 'file'} must be a mapping, got {data!r}")
    base = base if base is not None else cls()
    data = dict(data)
    section = where.rstrip(".")
    for (sec, old), new in _RENAMED.items():
        if sec == section and old in data and new not in data:
            data[new] = data.pop(old)
    bad_keys = [k for k in data if not isinstance(k, str)]
    if bad_keys:
        raise ConfigError(f"config keys must be names, got {bad_keys!r}{' in ' + section if section else ''}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {', '.join(where + k for k in unknown)}; "
            f"known keys{' in ' + section if section else ''}: {', '.join(sorted(known))}"
        )
    hints = typing.get_type_hints(cls)
    changes: dict[str, Any] = {}
    for name, value in data.items():
        current = getattr(base, name)
        if is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {where}{name} is a section and must be a mapping of its keys "
                                  f"(e.g. {name}: {{...}}), got {value!r}")
            changes[name] = from_dict(type(current), value, base=current, where=f"{where}{name}.")
        else:
            changes[name] = _check_value(value, hints[name], where + name)
    return dataclasses.replace(base, **changes)


def _nest(changes: dict[Any, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in changes.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"override keys are dotted names such as 'train.lr', got {key!r}")
        *parents, leaf = key.split(".")
        node = nested
        for p in parents:
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override key {key!r}: {p} is not a section")
            node = child
        if isinstance(value, dict) and isinstance(node.get(leaf), dict):
            node[leaf].update(value)
        else:
            node[leaf] = value
    return nested


def override(cfg: T, changes: dict[str, Any]) -> T:
    """`cfg` with changes given as dotted keys or nested dicts: override(cfg, {"train.lr": 1e-3}).

    Values are checked like values from a config file; the result's sections are checked as well."""
    if not isinstance(changes, dict):
        raise ConfigError(f"override takes a dict of changes such as {{'train.lr': 1e-3}}, got {changes!r}")
    out = from_dict(type(cfg), _nest(changes), base=cfg)
    if hasattr(out, "check"):
        out.check()
    return out


def load_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON config file into a dict; every problem is a ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist (or is not a file); check the --config path")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path} cannot be read: {e}") from None
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"config file {path} is not valid JSON: {e.msg} at line {e.lineno}, column "
                              f"{e.colno}") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            where = getattr(e, "problem_mark", None)
            at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise ConfigError(f"config file {path} is not valid YAML{at}: {problem} (only plain values, "
                              "lists and mappings are read; no !!python tags)") from None
        data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level (e.g. 'train: {{lr: "
                          f"0.001}}'), got {type(data).__name__}")
    return data


# --------------------------------------------------------------------------------------------------------
# hashing

def hashed_dict(cfg: Any) -> dict[str, Any]:
    """The part of the config that determines results and differs from the defaults: every hashed field
    (metadata without hash=False) whose value is not its default; sections recurse, empty ones are left
    out."""
    out: dict[str, Any] = {}
    default = type(cfg)()
    for f in fields(cfg):
        if not f.metadata.get("hash", True):
            continue
        value = getattr(cfg, f.name)
        if is_dataclass(value):
            sub = hashed_dict(value)
            if sub:
                out[f.name] = sub
        elif value != getattr(default, f.name):
            out[f.name] = value
    return json.loads(json.dumps(out))


def experiment_name(cfg: Any) -> str:
    return getattr(type(cfg), "experiment", type(cfg).__name__)


def config_hash(cfg: Any, length: int = 8) -> str:
    """Short, stable hash of the experiment's name and its result-determining, non-default settings."""
    blob = json.dumps({"experiment": experiment_name(cfg), "config": hashed_dict(cfg)}, sort_keys=True,
                      separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


# The hashed fields of lth 0.1, whose hash covered every one of them at any value. A run folder made then is
# named by that hash; `legacy_hash` recomputes it so that the store can find and adopt such a folder.
_LEGACY_FIELDS = {
    "data": ("dataset", "val_size", "split_seed", "augment"),
    "model": ("name", "init", "hidden", "width", "dropout"),
    "train": ("optimizer", "lr", "momentum", "nesterov", "weight_decay", "batch_size", "budget", "warmup",
              "schedule", "milestones", "gamma", "eval_every", "data_seed"),
    "prune": ("strategy", "rate", "conv_rate", "output_rate", "exclude", "score"),
    "lottery": ("rewind", "one_shot"),
}


def legacy_hash(cfg: Any, length: int = 8) -> str | None:
    """The hash lth 0.1 gave this config (None when the config uses anything lth 0.1 did not have)."""
    if not isinstance(cfg, RunConfig) or type(cfg) not in (RunConfig, ImpConfig):
        return None
    sections = ("data", "model", "train") + (("prune", "lottery") if isinstance(cfg, ImpConfig) else ())
    old: dict[str, Any] = {}
    for name in sections:
        section = getattr(cfg, name)
        values = {f.name: getattr(section, f.name) for f in fields(section) if f.metadata.get("hash", True)}
        if name == "prune":
            if values["criterion"] not in ("magnitude", "random"):
                return None
            values["score"] = values.pop("criterion")
        extra = set(values) - set(_LEGACY_FIELDS[name])
        if any(values[k] != getattr(type(section)(), k) for k in extra):
            return None  # a field added since: no folder of lth 0.1 can hold this config
        old[name] = {k: values[k] for k in _LEGACY_FIELDS[name]}
    old["seed"] = cfg.seed
    blob = json.dumps(json.loads(json.dumps(old)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def format_config(cfg: Any, indent: int = 0) -> str:
    """Readable multi-line rendering for the terminal: sections first, then the top-level settings."""
    pad = "  " * indent
    items = [(f.name, getattr(cfg, f.name)) for f in fields(cfg)]
    # Sections first, compute and executor (how, not what) last among them, then the top-level settings.
    how = ("compute", "executor")
    ordered = ([i for i in items if is_dataclass(i[1]) and i[0] not in how]
               + [i for i in items if i[0] in how] + [i for i in items if not is_dataclass(i[1])])
    lines = []
    for name, value in ordered:
        if is_dataclass(value):
            lines.append(f"{pad}{name}:")
            lines.append(format_config(value, indent + 1))
        else:
            lines.append(f"{pad}{name}: {value!r}")
    return "\n".join(lines)
