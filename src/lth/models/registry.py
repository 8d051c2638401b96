"""The model registry and `build_model`, which checks a ModelConfig against it before building."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import ConfigError
from . import conv, lstm, mlp, mnist1d, resnet, transformer, vgg
from .init import check_scheme, initialize

OPTIONS = ("hidden", "width", "dropout", "layers", "heads")


@dataclass(frozen=True)
class ModelInfo:
    name: str
    description: str
    builder: Callable[..., nn.Module]
    """builder(input_shape, num_classes, *, hidden, width, dropout) -> nn.Module. Every builder takes all
    three keywords (hidden=() and width=0 mean the model's default); it raises ValueError, before making
    any layer, when input_shape does not suit it. The keywords layers, heads and task are passed only at
    non-default values, so only to the models that accept them (checked by build_model first)."""
    options: frozenset[str]
    """Which of OPTIONS the model uses; build_model refuses the others at non-default values."""
    tasks: frozenset[str] = frozenset({"classify"})
    """What the model can be built for: "classify" (logits [B, C]) and/or "lm" (token ids [B, T] to
    next-token logits [B, T, vocab]); the dataset's task (DatasetInfo.task) picks one."""


def _info(name: str, description: str, builder: Callable[..., nn.Module], *options: str) -> ModelInfo:
    return ModelInfo(name, description, builder, frozenset(options))


MODELS: dict[str, ModelInfo] = {i.name: i for i in (
    _info("lenet_300_100", "LeNet-300-100 MLP (fc 300, 100, out), Frankle & Carbin's MNIST net",
          mlp.build_lenet_300_100, "hidden", "dropout"),
    _info("conv2", "Conv-2: 64,64,pool; fc 256,256,out (Frankle & Carbin, CIFAR-10)",
          conv.build_conv2, "dropout"),
    _info("conv4", "Conv-4: 64,64,pool,128,128,pool; fc 256,256,out", conv.build_conv4, "dropout"),
    _info("conv6", "Conv-6: 64,64,pool,128,128,pool,256,256,pool; fc 256,256,out",
          conv.build_conv6, "dropout"),
    _info("vgg11", "CIFAR VGG-11 with BatchNorm, global avgpool, fc", vgg.build_vgg11),
    _info("vgg16", "CIFAR VGG-16 with BatchNorm, global avgpool, fc", vgg.build_vgg16),
    _info("vgg19", "CIFAR VGG-19 with BatchNorm, global avgpool, fc (20.0M weights)", vgg.build_vgg19),
    _info("resnet20", "CIFAR ResNet-20 (16/32/64 x width/16), ~271K weights", resnet.build_resnet20, "width"),
    _info("resnet32", "CIFAR ResNet-32 (16/32/64 x width/16)", resnet.build_resnet32, "width"),
    _info("resnet56", "CIFAR ResNet-56 (16/32/64 x width/16)", resnet.build_resnet56, "width"),
    _info("mnist1d_mlp", "MNIST-1D lottery MLP 40-500-500-10", mlp.build_mnist1d_mlp, "hidden", "dropout"),
    _info("mnist1d_cnn", "MNIST-1D reference CNN (three 1-D convs of 25 channels, fc)",
          mnist1d.build_mnist1d_cnn),
    ModelInfo("lstm", "LSTM (width 128, 1 layer): sequence classifier (last step) or character LM",
              lstm.build_lstm, frozenset({"width", "layers"}), frozenset({"classify", "lm"})),
    ModelInfo("transformer", "pre-LN Transformer (width 128, 2 layers, 4 heads): mean-pooled classifier "
              "or causal LM", transformer.build_transformer, frozenset({"width", "layers", "heads"}),
              frozenset({"classify", "lm"})),
)}


def _set_options(cfg: ModelConfig) -> dict[str, object]:
    """The options the config sets to something other than "the model's default", after checking values."""
    out: dict[str, object] = {}
    if cfg.hidden:
        if any(not isinstance(h, int) or h < 1 for h in cfg.hidden):
            raise ConfigError(f"model.hidden must be positive integers, got {cfg.hidden!r}")
        out["hidden"] = tuple(cfg.hidden)
    if cfg.width:
        if not isinstance(cfg.width, int) or cfg.width < 1:
            raise ConfigError(f"model.width must be a positive integer (0: default), got {cfg.width!r}")
        out["width"] = cfg.width
    if cfg.dropout:
        if not 0.0 < cfg.dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {cfg.dropout!r}")
        out["dropout"] = cfg.dropout
    for option in ("layers", "heads"):
        value = getattr(cfg, option)
        if value:
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"model.{option} must be a positive integer (0: default), got {value!r}")
            out[option] = value
    return out


def build_model(cfg: ModelConfig, *, input_shape: tuple[int, ...], num_classes: int, seed: int,
                task: str = "classify") -> nn.Module:
    """Check `cfg`, build the network for `input_shape` and `num_classes`, and initialize it from `seed`.

    `task` is the dataset's (DatasetInfo.task / Dataset.task): "classify", or "lm" where num_classes is the
    vocabulary and input_shape is (context,)."""
    info = MODELS.get(cfg.name)
    if info is None:
        raise ConfigError(f"unknown model {cfg.name!r}; known models: {', '.join(MODELS)}")
    if task not in info.tasks:
        takers = [n for n, i in MODELS.items() if task in i.tasks]
        raise ConfigError(f"model {cfg.name!r} cannot be built for task {task!r} (the dataset's); "
                         f"models that can: {', '.join(takers) or 'none'}")
    options = _set_options(cfg)
    for option, value in options.items():
        if option not in info.options:
            takers = [n for n, i in MODELS.items() if option in i.options]
            raise ConfigError(
                f"model {cfg.name!r} does not accept option {option}={value!r}; "
                f"models that accept {option}: {', '.join(takers)}"
            )
    check_scheme(cfg.init)
    if num_classes < 1:
        raise ConfigError(f"num_classes must be positive, got {num_classes}")
    # Only the sequence models take these, and only they can have them at non-default values by now.
    extra = {k: v for k, v in options.items() if k not in ("hidden", "width", "dropout")}
    if task != "classify":
        extra["task"] = task
    # Construction runs PyTorch's default init on the global RNG; fork it so building leaves the global
    # stream where it was (our own initialize below uses a private generator).
    with torch.random.fork_rng(devices=[]):
        model = info.builder(tuple(input_shape), num_classes, hidden=tuple(cfg.hidden), width=cfg.width,
                             dropout=cfg.dropout, **extra)
    initialize(model, cfg.init, seed)
    return model
