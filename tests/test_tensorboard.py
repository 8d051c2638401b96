"""`--log tensorboard`: every training's curves and the per-level sparsity as TensorBoard events, written from
the run folder's own metrics (which stay the record); a training recorded again replaces its events."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from lth.cli import main
from lth.errors import ConfigError
from lth.experiments import run_imp


def test_without_the_extra_the_flag_is_refused_with_the_pip_command(tiny_cfg, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if it were not installed
    with pytest.raises(ConfigError, match=r"pip install 'lth\[tensorboard\]'"):
        run_imp(replace(tiny_cfg, log=("tensorboard",)), progress=False, log=lambda _: None)
    assert not list(Path(tiny_cfg.out_dir).glob("*/rep0"))  # refused before anything was made


def test_an_unknown_logger_is_refused(tmp_path, capsys):
    assert main(["run", "--log", "wandb", "--out", str(tmp_path)]) == 2
    assert "--log wandb: unknown; choose from tensorboard" in capsys.readouterr().err


def scalars(folder) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_event_files_hold_every_trainings_curves_and_the_sparsity(tiny_cfg):
    pytest.importorskip("tensorboard", reason="--log tensorboard needs the extra: pip install 'lth[tensorboard]'")
    cfg = replace(tiny_cfg, log=("tensorboard",), lottery=replace(tiny_cfg.lottery, levels=2, controls=("reinit",)))
    store = run_imp(cfg, progress=False, log=lambda _: None)
    board = store.root / "tensorboard"
    for key in ("rep0/level00/ticket", "rep0/level01/ticket", "rep0/level01/reinit", "rep0/level02/reinit"):
        curves = scalars(board / key)
        rows = list(csv.DictReader((store.root / key / "metrics.csv").open()))
        assert set(curves) == {"val/loss", "val/acc", "test/loss", "test/acc", "train/loss", "train/acc"}
        assert [step for step, _ in curves["test/acc"]] == [int(r["step"]) for r in rows]
        assert [v for _, v in curves["val/loss"]] == pytest.approx([float(r["val_loss"]) for r in rows], rel=1e-6)
    by_level = scalars(board / "rep0" / "ticket")
    summaries = [json.loads((store.root / f"rep0/level0{lv}/ticket/summary.json").read_text()) for lv in range(3)]
    assert [step for step, _ in by_level["sparsity/remaining_percent"]] == [0, 1, 2]
    assert [v for _, v in by_level["sparsity/remaining_percent"]] == pytest.approx(
        [s["remaining_percent"] for s in summaries], rel=1e-6)
    assert [step for step, _ in by_level["level/final_test_acc"]] == [0, 1, 2]

    # Recorded again (as after a kill between the events and the summary): replaced, not doubled.
    unit_dir = store.root / "rep0/level02/ticket"
    (unit_dir / "summary.json").unlink()
    run_imp(cfg, progress=False, log=lambda _: None)
    assert len(list((board / "rep0/level02/ticket").glob("events.out.tfevents.*"))) == 1
    assert len(scalars(board / "rep0/level02/ticket")["test/acc"]) == len(list(csv.DictReader((unit_dir / "metrics.csv").open())))
    assert [step for step, _ in scalars(board / "rep0" / "ticket")["level/final_test_acc"]] == [0, 1, 2]
