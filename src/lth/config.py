"""Typed experiment configuration.

One tree of frozen dataclasses is the single source of truth: the CLI flags are generated from it (tyro),
it is printed and saved as JSON, and its hash names the run folder. Fields whose metadata says
``hash=False`` (where data lives, which device, where runs go) do not change what is computed, so they do
not change the hash: the same experiment run from another folder or machine finds its results.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

T = TypeVar("T")


def _local(default: Any, doc: str = "") -> Any:
    """A field that says where or how to compute, not what: it is left out of the run hash."""
    return field(default=default, metadata={"hash": False, "doc": doc})


def _extent(default: Any) -> Any:
    """A field that says how much of an experiment to run (levels, replicates, controls), not what any one
    training computes: every seed derives from (seed, replicate, level, branch). It is left out of the run
    hash, so asking for more levels, replicates or controls extends the existing run instead of redoing it."""
    return field(default=default, metadata={"hash": False})


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, and how its training set is split into train and validation."""

    dataset: str = "mnist1d"
    """mnist1d | mnist | fashion_mnist | cifar10 | cifar100 | synthetic"""
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


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and initialization."""

    name: str = "mnist1d_mlp"
    """A name from `lth models`: lenet_300_100, conv2, conv4, conv6, vgg11/16/19, resnet20/32/56,
    mnist1d_mlp, mnist1d_cnn."""
    init: str = "glorot_normal"
    """glorot_normal | glorot_uniform | kaiming_normal | kaiming_uniform | signed_kaiming_constant"""
    hidden: tuple[int, ...] = ()
    """Hidden widths of an MLP (empty: the model's default, e.g. 300 100 for LeNet)."""
    width: int = 0
    """Channel width of a ResNet's first stage (0: the model's default, 16)."""
    dropout: float = 0.0
    """Dropout rate before each hidden fully connected layer (Conv-2/4/6 and MLPs)."""
    layers: int = 0
    """Depth of a sequence model: LSTM layers or Transformer blocks (0: the model's default, 1 and 2)."""
    heads: int = 0
    """Attention heads of a Transformer (0: the model's default, 4)."""


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
    amp: bool = _local(True)
    """bfloat16 autocast on CUDA (ignored on CPU)."""


@dataclass(frozen=True)
class PruneConfig:
    """How a level's mask is chosen from the trained weights."""

    strategy: Literal["layerwise", "global"] = "layerwise"
    rate: float = 0.2
    """Fraction of the *remaining* weights removed per level (fully connected layers, or all with global)."""
    conv_rate: float | None = None
    """Layer-wise rate for convolutions (None: same as `rate`)."""
    output_rate: float | None = None
    """Layer-wise rate for the output layer (None: half of `rate`, as in Frankle & Carbin)."""
    exclude: tuple[str, ...] = ()
    """Parameter-name patterns (fnmatch) never pruned, e.g. 'fc*' or '*shortcut*'."""
    score: Literal["magnitude", "random"] = "magnitude"
    embedding_rate: float | None = None
    """Layer-wise rate for embedding matrices (None: same as `rate`)."""


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
    controls: tuple[str, ...] = _extent(("reinit", "random_prune"))
    """reinit: same mask, fresh initialization. random_prune: random mask, same per-layer sparsity."""
    reinit_draws: int = _extent(1)
    """Independent reinitializations per level."""
    replicates: int = _extent(1)
    """Independent seeds (initialization and data order) of the whole experiment."""


@dataclass(frozen=True)
class ExperimentConfig:
    """A complete experiment: everything that determines its results, plus where to run it."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    lottery: LotteryConfig = field(default_factory=LotteryConfig)
    seed: int = 0
    """Seed of the initialization (replicate r uses seed + r, and data_seed + r)."""
    preset: str = _local("")
    """The preset this config started from (informational)."""
    device: str = _local("auto")
    """auto | cpu | cuda | cuda:N"""
    out_dir: str = _local("runs")
    """Folder that holds run folders."""
    checkpoint_seconds: float = _local(30.0)
    """Save resumable training state at an evaluation point once this much time passed since the last."""


# --------------------------------------------------------------------------------------------------------
# dict round trip, overrides, hashing


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain JSON-able dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def from_dict(cls: type[T], data: dict[str, Any], *, base: T | None = None, where: str = "") -> T:
    """Build `cls` from a (possibly partial) nested dict, on top of `base`.

    Unknown keys are an error that names the key and the known ones: a typo in a YAML file must not be
    silently ignored.
    """
    base = base if base is not None else cls()
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(
            f"unknown config key(s) {', '.join(where + k for k in unknown)}; "
            f"known keys{' in ' + where.rstrip('.') if where else ''}: {', '.join(sorted(known))}"
        )
    changes: dict[str, Any] = {}
    for name, value in data.items():
        current = getattr(base, name)
        if is_dataclass(current):
            if not isinstance(value, dict):
                raise ValueError(f"config key {where}{name} must be a mapping, got {value!r}")
            changes[name] = from_dict(type(current), value, base=current, where=f"{where}{name}.")
        elif isinstance(current, tuple) or (isinstance(value, list)):
            changes[name] = tuple(value) if isinstance(value, (list, tuple)) else (value,)
        else:
            changes[name] = value
    return dataclasses.replace(base, **changes)


def override(cfg: T, changes: dict[str, Any]) -> T:
    """`cfg` with changes given as dotted keys or nested dicts: override(cfg, {"train.lr": 1e-3})."""
    nested: dict[str, Any] = {}
    for key, value in changes.items():
        *parents, leaf = key.split(".")
        node = nested
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return from_dict(type(cfg), nested, base=cfg)


def load_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON config file into a dict."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"config file {path} does not exist")
    text = path.read_text()
    if path.suffix == ".json":
        data = json.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping at the top level")
    return data


def hashed_dict(cfg: Any) -> dict[str, Any]:
    """The part of the config that determines results: every field whose metadata does not say hash=False.

    Also takes a dict of config parts (a dense training hashes only data, model, train and seed)."""
    if isinstance(cfg, dict):
        return {k: hashed_dict(v) if is_dataclass(v) else v for k, v in cfg.items()}
    out: dict[str, Any] = {}
    for f in fields(cfg):
        if not f.metadata.get("hash", True):
            continue
        value = getattr(cfg, f.name)
        out[f.name] = hashed_dict(value) if is_dataclass(value) else value
    return json.loads(json.dumps(out))


def config_hash(cfg: Any, length: int = 8) -> str:
    """Short, stable hash of the result-determining config."""
    blob = json.dumps(hashed_dict(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def format_config(cfg: Any, indent: int = 0) -> str:
    """Readable multi-line rendering for the terminal."""
    lines = []
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        pad = "  " * indent
        if is_dataclass(value):
            lines.append(f"{pad}{f.name}:")
            lines.append(format_config(value, indent + 1))
        else:
            lines.append(f"{pad}{f.name}: {value!r}")
    return "\n".join(lines)
