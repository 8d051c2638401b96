"""Experiment trackers beside a run folder's own records (`--log tensorboard`).

The CSV and JSON files of the run folder stay the record. A tracker gets a copy, written from a training's
metrics and summary when the training is recorded (`RunStore.write_result`), so that every experiment and
every executor feeds it alike, and a training that is recorded again (after a kill between the two writes)
replaces its events instead of doubling them.

TensorBoard, under `<run>/tensorboard/`:
- `rep0/level03/ticket/` (one TensorBoard run per training, so a level's ticket and controls overlay):
  `val/loss`, `val/acc`, `test/loss`, `test/acc`, `train/loss`, `train/acc` against the iteration;
- `rep0/ticket/` (one per replicate and branch), against the level: `sparsity/remaining_percent` (P_m) and
  `level/early_stop_step`, `level/early_stop_test_acc`, `level/final_test_acc`.
Point TensorBoard at it: `tensorboard --logdir runs/<run>/tensorboard`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from lth.errors import ConfigError

INSTALL = "pip install 'lth[tensorboard]'"
CURVES = {"val_loss": "val/loss", "val_acc": "val/acc", "test_loss": "test/loss", "test_acc": "test/acc",
          "train_loss": "train/loss", "train_acc": "train/acc"}
BY_LEVEL = {"remaining_percent": "sparsity/remaining_percent", "early_stop_step": "level/early_stop_step",
            "early_stop_test_acc": "level/early_stop_test_acc", "final_test_acc": "level/final_test_acc"}


def require_tensorboard() -> None:
    if importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(f"--log tensorboard needs the tensorboard package, which is not installed here: {INSTALL}")


def _write_events(board: Path, target: Path, points: list[tuple[str, float, int]]) -> None:
    """Scalars (tag, value, step) as one event file at `target`, replacing what was there at once (written in
    a scratch folder, then renamed): a training recorded again leaves one file, not two."""
    import os
    import shutil
    import tempfile

    from torch.utils.tensorboard import SummaryWriter

    board.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=board, prefix=".writing-"))
    try:
        writer = SummaryWriter(str(scratch))
        for tag, value, step in points:
            writer.add_scalar(tag, value, step)
        writer.close()
        [written] = scratch.glob("events.out.tfevents.*")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(written, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def write_tensorboard(board: Path, key: str, metrics: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    """The events of one training (`key`: rep0/level03/ticket) from its metrics rows and summary. Files are
    named so that TensorBoard, which reads a folder's files in name order, meets the levels in order."""
    rep, level, branch = key.split("/")
    curves = [(tag, row[name], int(row["step"])) for row in metrics for name, tag in CURVES.items()
              if row.get(name) is not None]
    _write_events(board, board / key / "events.out.tfevents.lth", curves)
    points = [(tag, summary[name], int(summary["level"])) for name, tag in BY_LEVEL.items()
              if summary.get(name) is not None]
    _write_events(board, board / rep / branch / f"events.out.tfevents.{level}", points)
