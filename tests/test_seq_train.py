"""Sequence models through lth's own training loop: `lth run`/`lth train` end to end, token-level accuracy,
bits per character where classifiers show accuracy, refusals before any work, and resuming after a kill."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

from lth.cli import main
from lth.config import (
    DataConfig,
    ImpConfig,
    LotteryConfig,
    ModelConfig,
    PruneConfig,
    TrainConfig,
)
from lth.data import load_dataset
from lth.experiments import run_imp
from lth.models import build_model
from lth.store import Unit
from lth.train import train
from lth.train.metrics import evaluate
from lth.train.module import ChainStepper, single_stepper


def quiet(*_):
    pass


def lm_cfg(tmp_path, name: str) -> ImpConfig:
    return ImpConfig(data=DataConfig(dataset="chars_tiny"), model=ModelConfig(name=name, width=16, layers=1),
                     train=TrainConfig(lr=1e-2, batch_size=16, budget="40it", eval_every="10it"),
                     prune=PruneConfig(rate=0.5, embedding_rate=0.25), lottery=LotteryConfig(levels=1),
                     out_dir=str(tmp_path), device="cpu")


@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_the_loop_trains_sequence_models_and_counts_tokens(name):
    ds = load_dataset("chars_tiny")
    model = build_model(ModelConfig(name=name, width=16, layers=1), input_shape=ds.input_shape,
                        num_classes=ds.num_classes, seed=0, task=ds.task)
    stepper = single_stepper(model, TrainConfig(), device=torch.device("cpu"))
    assert not isinstance(stepper, ChainStepper)  # the hand-written MLP chain never takes a sequence model
    result = train(model, ds, TrainConfig(lr=1e-2, batch_size=16, budget="30it", eval_every="10it"), device="cpu")
    rows = result.metrics
    assert rows[-1]["val_loss"] < rows[0]["val_loss"] - 0.3
    # Accuracy is over tokens (next characters), not over sequences: it is the fraction of [N, T] targets hit.
    with torch.no_grad():
        logits = model(ds.test.x)
    by_token = (logits.argmax(-1) == ds.test.y).float().mean().item()
    loss, acc = evaluate(model, ds.test.x, ds.test.y)
    assert acc.item() == pytest.approx(by_token, abs=1e-6) == pytest.approx(rows[-1]["test_acc"], abs=1e-6)
    assert all(0 <= r["train_acc"] <= 1 for r in rows[1:])
    s = result.summary
    best = min(rows, key=lambda r: r["val_loss"])  # the early stop is on validation loss
    assert s["early_stop_step"] == best["step"]
    assert s["early_stop_val_bpc"] == pytest.approx(best["val_loss"] / math.log(2))
    assert s["early_stop_test_bpc"] == pytest.approx(best["test_loss"] / math.log(2))
    assert s["final_test_bpc"] == pytest.approx(loss.item() / math.log(2), rel=1e-5)


def test_imp_on_a_language_model_shows_bits_per_character(tmp_path, capsys):
    store = run_imp(lm_cfg(tmp_path, "transformer"), progress=False, log=print)
    printed = capsys.readouterr().out
    assert "ES iter  val bpc@ES  test bpc@ES  train bpc@end  test bpc@end" in printed
    assert "val@ES" not in printed
    assert main(["show", str(store.root), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    ticket = next(r for r in shown["levels"] if r["level"] == 1 and r["branch"] == "ticket")
    assert set(ticket["final_test_bpc"]) == {"mean", "min", "max"}
    assert ticket["final_test_bpc"]["mean"] == pytest.approx(ticket["final_test_loss"]["mean"] / math.log(2))
    assert main(["report", str(store.root), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "summary.md").read_text()
    assert "| test bpc@ES |" in md and "Bits per character (lower is better)" in md and "val@ES" not in md
    assert (tmp_path / "rep" / "fig-bpc_vs_pm.png").exists() and (tmp_path / "rep" / "fig-test_bpc_vs_iteration.png").exists()


def test_lth_train_prints_bits_per_character(tmp_path, capsys):
    args = ["train", "--preset", "lstm_mnist1d_seq", "--data.dataset", "chars_tiny", "--model.width", "16",
            "--train.budget", "20it", "--train.eval_every", "10it", "--quiet", "--no-report", "--out", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "val " in out and " bpc, test " in out and "acc" not in out.split("dense lstm on chars_tiny:")[1]


def test_sequence_inputs_are_refused_before_any_work(tmp_path, capsys):
    base = ["run", "--preset", "lstm_mnist1d_seq", "--data.dataset", "chars_tiny", "--out", str(tmp_path)]
    assert main(base + ["--data.context", "1000"]) == 2
    assert "too small for context 1000" in capsys.readouterr().err
    assert main(base + ["--prune.exclude", "conv*"]) == 2
    assert "'conv*' matches no prunable weight; prunable weights: embed.weight" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def _results(root) -> dict:
    out = {}
    for p in sorted(root.rglob("summary.json")):
        s = json.loads(p.read_text())
        s.pop("seconds")
        out[str(p.relative_to(root))] = s
    for p in [*root.rglob("metrics.csv"), *root.rglob("*.safetensors")]:
        out[str(p.relative_to(root))] = p.read_bytes()
    return out


@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_a_killed_sequence_run_resumes_bit_for_bit(tmp_path, name, monkeypatch):
    import lth.train.loop as loop

    cfg = replace(lm_cfg(tmp_path / "killed", name), checkpoint_seconds=0.0)
    clean = run_imp(replace(cfg, out_dir=str(tmp_path / "clean")), progress=False, log=quiet)
    real, saved = loop.save_state, []

    def save_then_die(state, path):
        real(state, path)
        saved.append(str(path))
        if "level01/ticket" in str(path) and state["step"] == 20:
            raise KeyboardInterrupt  # killed right after the checkpoint at step 20

    monkeypatch.setattr(loop, "save_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_imp(cfg, progress=False, log=quiet)
    monkeypatch.setattr(loop, "save_state", real)
    store = run_imp(cfg, progress=False, log=quiet)
    assert any("level01/ticket" in p for p in saved)
    assert _results(store.root) == _results(clean.root)
    assert not store.resume_path(Unit(0, 1, "ticket")).exists()
