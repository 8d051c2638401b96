"""The sections every experiment shares (data, model, train, prune, lottery, compute, executor), the
run-level settings (RunConfig) and IMP's config (ImpConfig)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, ClassVar, Literal

from lth.config.fields import _extent, _local, _positive_finite, parse_steps
from lth.config.parse import check_types
from lth.errors import ConfigError
from lth.names import CONTROLS, is_reset


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


ExperimentConfig = ImpConfig
"""The name of the IMP config in lth 0.1, kept for code written against it."""
