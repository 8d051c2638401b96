"""lth.report on small real runs: every written figure is embedded, the tables match aggregate(), partial and
empty runs, and several runs labelled by their config difference."""

import csv
import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from lth.config import (
    DataConfig,
    ExperimentConfig,
    LotteryConfig,
    ModelConfig,
    PruneConfig,
    TrainConfig,
)
from lth.errors import UserError
from lth.lottery import aggregate, find_tickets, run_imp
from lth.report import build_report, write_report
from lth.store import RunStore


def quiet(*_):
    pass


def base_cfg(root: Path) -> ExperimentConfig:
    # As tests/conftest.py's tiny_cfg, with two replicates; module-scoped so the runs are trained once.
    return ExperimentConfig(
        data=DataConfig(dataset="synthetic", data_dir=str(root / "data")),
        model=ModelConfig(name="lenet_300_100", hidden=(32, 16)),
        train=TrainConfig(optimizer="adam", lr=3e-3, batch_size=50, budget="60it", eval_every="20it"),
        prune=PruneConfig(rate=0.5),
        lottery=LotteryConfig(levels=2, replicates=2),
        out_dir=str(root / "runs"),
        device="cpu",
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    cfg = base_cfg(root)
    iterative = run_imp(cfg, progress=False, log=quiet).root
    one_shot = run_imp(replace(cfg, lottery=replace(cfg.lottery, one_shot=True)), progress=False, log=quiet).root
    return cfg, iterative, one_shot


def embedded_images(html: str) -> list[str]:
    return re.findall(r'<img[^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)


def test_report_embeds_every_figure_and_the_table(runs, tmp_path):
    import base64

    _, run, _ = runs
    notes = []
    html_path = write_report([run], tmp_path / "out", log=notes.append)
    assert html_path == tmp_path / "out" / "report.html" and html_path.exists()
    html = html_path.read_text()
    pngs = sorted((tmp_path / "out").glob("*.png"))
    svgs = sorted((tmp_path / "out").glob("*.svg"))
    assert len(pngs) == len(svgs) >= 8  # P_m figures, curves, masks, first layer, weights
    images = embedded_images(html)
    assert len(images) == len(pngs)
    assert sorted(base64.b64decode(i) for i in images) == sorted(p.read_bytes() for p in pngs)
    # Self-contained: nothing fetched or linked.
    assert not re.findall(r"""(?:src|href)\s*=\s*["'](?!data:)""", html)
    assert "<script" not in html and "<link" not in html
    rows = aggregate(RunStore(run).summaries())
    assert f"{rows[-1]['remaining_percent']:.2f}" in html
    assert notes == []  # a finished run: nothing missing


def test_tables_match_aggregate(runs, tmp_path):
    _, run, _ = runs
    report = build_report([run], tmp_path)
    rows = aggregate(RunStore(run).summaries())
    with open(report.tables["csv"]) as f:
        table = list(csv.DictReader(f))
    assert [(int(t["level"]), t["branch"]) for t in table] == [(r["level"], r["branch"]) for r in rows]
    for t, r in zip(table, rows):
        assert float(t["remaining_percent"]) == pytest.approx(r["remaining_percent"])
        assert t["replicates"] == " ".join(map(str, r["replicates"]))
        for key in ("early_stop_test_acc", "final_train_acc", "early_stop_step"):
            for stat in ("mean", "min", "max"):
                assert float(t[f"{key}_{stat}"]) == pytest.approx(r[key][stat])
    md = [line for line in report.tables["markdown"].read_text().splitlines() if line.startswith("| ")][1:]
    assert len(md) == len(rows)
    for line, r in zip(md, rows):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[:3] == [str(r["level"]), f"{r['remaining_percent']:.2f}", r["branch"]]
        assert cells[6].startswith(f"{100 * r['early_stop_test_acc']['mean']:.1f} [")  # test@ES %


def test_partial_run_reports_what_it_has_and_names_the_gap(runs, tmp_path):
    _, run, _ = runs
    part = tmp_path / run.name
    shutil.copytree(run, part)
    (part / "rep1" / "level02" / "reinit" / "summary.json").unlink()
    shutil.rmtree(part / "rep1" / "level02" / "random_prune")
    notes = []
    html = write_report([part], log=notes.append).read_text()
    assert (part / "report" / "report.html").exists()  # the default output folder
    want = "level 2: reinit missing for replicate 1; random_prune missing for replicate 1"
    assert any(want in n for n in notes) and want in html
    report = build_report([part], tmp_path / "again")
    rows = list(csv.DictReader(open(report.tables["csv"])))
    assert [r["replicates"] for r in rows if r["level"] == "2" and r["branch"] == "reinit"] == ["0"]


def test_a_run_stopped_by_target_pm_names_its_missing_last_level(tmp_path):
    # With a target P_m, the config alone does not say how many levels there are; the driver's plan.json does.
    cfg = base_cfg(tmp_path)
    cfg = replace(cfg, lottery=replace(cfg.lottery, levels=10, target_pm=40.0, replicates=1))
    run = run_imp(cfg, progress=False, log=quiet).root
    plan = json.loads((run / "plan.json").read_text())
    assert len(plan["pm_percent"]) == 3 and plan["pm_percent"][1] > 40 >= plan["pm_percent"][2]
    assert write_report_notes(run, tmp_path / "full") == []
    shutil.rmtree(run / "rep0" / "level02")  # as if killed before the last level started
    assert any("level 2: no finished trainings" in n for n in write_report_notes(run, tmp_path / "partial"))


def write_report_notes(run: Path, out: Path) -> list[str]:
    notes = []
    write_report([run], out, log=notes.append)
    return notes


def test_two_runs_labelled_by_their_config_difference(runs, tmp_path):
    _, iterative, one_shot = runs
    report = build_report([iterative, one_shot], tmp_path)
    svg = (tmp_path / "fig-accuracy_vs_pm.svg").read_text()
    assert "lottery.one_shot=True" in svg and "lottery.one_shot=False" in svg
    html = report.html.read_text()
    assert "lottery.one_shot=True" in html
    assert len(embedded_images(html)) == len(list(tmp_path.glob("*.png"))) == len(report.figures)
    # Masks are analysed per run; the result figures hold both runs.
    assert {f.name for f in report.figures} >= {"fig-accuracy_vs_pm", "fig-mask_jaccard-run1", "fig-mask_jaccard-run2"}


def test_empty_runs_are_a_user_error(runs, tmp_path):
    cfg, _, _ = runs
    empty = RunStore.for_config(replace(cfg, seed=123, out_dir=str(tmp_path))).root  # config.json, no trainings
    with pytest.raises(UserError, match="no finished trainings"):
        write_report([empty], log=quiet)
    (tmp_path / "blank").mkdir()
    with pytest.raises(UserError, match="not an lth run folder"):
        write_report([tmp_path / "blank"], log=quiet)


def test_find_tickets_run_without_metrics(tmp_path):
    """A user's model and loop: only its own numbers, no metrics.csv; the input layer is guessed as 28×28."""
    def model_fn():
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 12), nn.ReLU(), nn.Linear(12, 10))

    def train_fn(model, mask):
        return {"test_acc": 0.5 + 0.1 * float(torch.rand(()))}

    store = find_tickets(model_fn, train_fn, name="tiny", lottery=LotteryConfig(levels=2, controls=("reinit",)),
                         out_dir=str(tmp_path), log=quiet)
    notes = []
    html = write_report([store.root], tmp_path / "out", log=notes.append).read_text()
    assert any("no metrics.csv" in n for n in notes)
    names = {p.stem for p in (tmp_path / "out").glob("*.png")}
    assert {"fig-metrics_vs_pm", "fig-first_layer_units", "fig-first_layer_inputs"} <= names
    assert len(embedded_images(html)) == len(names)
