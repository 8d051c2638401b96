"""Checks that run before any training: bad input is refused with a message that names the fix,
instead of failing an hour into a run."""

from __future__ import annotations

from lth.config import ExperimentConfig, TrainConfig
from lth.train.steps import check_steps


def check_train(cfg: TrainConfig) -> None:
    if cfg.lr <= 0:
        raise ValueError(f"--train.lr must be positive, got {cfg.lr}")
    if cfg.batch_size < 1:
        raise ValueError(f"--train.batch_size must be >= 1, got {cfg.batch_size}")
    if cfg.weight_decay < 0:
        raise ValueError(f"--train.weight_decay must be >= 0, got {cfg.weight_decay}")
    check_steps(cfg.budget, "--train.budget")
    check_steps(cfg.warmup, "--train.warmup")
    check_steps(cfg.eval_every, "--train.eval_every")
    for m in cfg.milestones:
        check_steps(m, "--train.milestones")
    if cfg.schedule == "multistep" and not cfg.milestones:
        raise ValueError("--train.schedule multistep needs --train.milestones (e.g. 80ep 120ep)")


def check_experiment(cfg: ExperimentConfig, *, lottery: bool = True) -> None:
    """Everything that can be checked without training: names, numbers, data files, output folder."""
    from lth.data import DATASETS, check_available
    from lth.models import MODELS
    from lth.train import resolve_device

    if cfg.model.name not in MODELS:
        raise ValueError(f"unknown model {cfg.model.name!r}; known: {', '.join(MODELS)}")
    if cfg.data.dataset not in DATASETS:
        raise ValueError(f"unknown dataset {cfg.data.dataset!r}; known: {', '.join(DATASETS)}")
    if not 0 <= cfg.model.dropout < 1:
        raise ValueError(f"--model.dropout must be in [0, 1), got {cfg.model.dropout}")
    check_train(cfg.train)
    if lottery:
        from lth.lottery.imp import check_lottery

        check_lottery(cfg)
        check_steps(cfg.lottery.rewind, "--lottery.rewind")
    resolve_device(cfg.device)
    check_available(cfg.data.dataset, cfg.data.data_dir, cfg.data.download)
