"""What a training measures: the loss, whole-split evaluation, and the summary read off the evaluations.

The loss is cross-entropy over the last dimension, so one convention covers classifiers (logits [B, C],
targets [B]) and sequence models (logits [B, T, V], targets [B, T]); accuracy is the fraction of targets
predicted right.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

METRIC_FIELDS = ("step", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")

EVAL_BATCH = 4096
"""Examples per forward pass when evaluating a whole split: a few large matrix products per split."""


def cross_entropy(logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy in float32 over the last dimension (sequence logits are flattened to tokens)."""
    if logits.dim() > 2:
        return F.cross_entropy(logits.float().flatten(0, -2), y.flatten(), reduction=reduction)
    return F.cross_entropy(logits.float(), y, reduction=reduction)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = EVAL_BATCH,
             autocast: contextlib.AbstractContextManager | None = None,
             forward: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean loss, accuracy) over a whole split, as 0-d tensors on the device (no host sync).

    `forward` computes the model's function in its place (the chain stepper passes its lth.train.chain.Chain)."""
    forward = forward or model
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device)
    for i in range(0, len(x), batch_size):
        with autocast or contextlib.nullcontext():
            logits = forward(x[i:i + batch_size])
        loss_sum += cross_entropy(logits, y[i:i + batch_size], reduction="sum")
        correct += (logits.argmax(-1) == y[i:i + batch_size]).sum()
    model.train(was_training)
    n = max(1, y.numel())
    return loss_sum / n, correct / n


def bits(loss: float | None) -> float | None:
    """Bits per token (character) of a mean cross-entropy in nats."""
    return None if loss is None else loss / math.log(2)


def summarize(metrics: list[dict[str, float]], final_train: tuple[float, float],
              task: str = "classify") -> dict[str, Any]:
    """Early stop (minimum validation loss; ties: the earlier step; a diverged NaN loss never wins) and
    end-of-training numbers. A language model (task "lm") also gets the test loss at the early stop and bits
    per character (loss / ln 2) of each loss: the fields its tables and figures show instead of accuracy."""
    best = min(metrics, key=lambda m: (math.isnan(m["val_loss"]), m["val_loss"], m["step"]))
    last = metrics[-1]
    out = {
        "iterations": int(last["step"]),
        "early_stop_step": int(best["step"]),
        "early_stop_val_loss": best["val_loss"],
        "early_stop_val_acc": best["val_acc"],
        "early_stop_test_acc": best["test_acc"],
        "final_val_acc": last["val_acc"],
        "final_test_loss": last["test_loss"],
        "final_test_acc": last["test_acc"],
        "final_train_loss": final_train[0],
        "final_train_acc": final_train[1],
    }
    if task == "lm":
        out.update({"early_stop_test_loss": best["test_loss"], "early_stop_val_bpc": bits(best["val_loss"]),
                    "early_stop_test_bpc": bits(best["test_loss"]), "final_train_bpc": bits(final_train[0]),
                    "final_test_bpc": bits(last["test_loss"])})
    return out
