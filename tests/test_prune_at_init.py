"""The `prune_at_init` experiment: IMP's P_m, θ_0 and data order; the ablations do what Frankle et al. (2021)
describe; layer collapse is reported; bad input is refused before training; a killed run resumes with
identical results; the report labels it apart from an IMP run of the same model and data."""

from dataclasses import replace

import pytest
import torch

from lth.config import (
    DataConfig,
    LotteryConfig,
    ModelConfig,
    PaiSection,
    PruneAtInitConfig,
    PruneConfig,
    TrainConfig,
)
from lth.errors import ConfigError
from lth.prune import Mask
from lth.store import Unit


def quiet(*_):
    pass


def tiny(tmp_path, **pai) -> PruneAtInitConfig:
    """tiny_cfg's data, model, training and schedule (rate 0.5), pruned at initialization instead."""
    return PruneAtInitConfig(
        data=DataConfig(dataset="synthetic", data_dir=str(tmp_path / "data")),
        model=ModelConfig(name="lenet_300_100", hidden=(32, 16)),
        train=TrainConfig(optimizer="adam", lr=3e-3, batch_size=50, budget="60it", eval_every="20it"),
        prune=PruneConfig(rate=0.5), pai=PaiSection(**pai), out_dir=str(tmp_path / "runs"), device="cpu")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from lth.experiments import launch

    root = tmp_path_factory.mktemp("pai")
    cfg = tiny(root, levels=(1, 2), ablations=("shuffle", "reinit", "invert"), ablation_levels=(2,))
    return cfg, launch(cfg, progress=False, log=quiet)


def test_levels_have_imps_p_m_and_every_branch_trains(run):
    from lth.prune import pm_schedule

    cfg, store = run
    summaries = {(s.level, s.branch): s for s in store.summaries()}
    criteria = ("snip", "grasp", "synflow", "magnitude_init", "random", "smart_ratio")
    ablated = [f"{c}_{a}" for c in criteria[:4] for a in ("shuffle", "reinit", "invert")]
    assert set(summaries) == {(0, "dense")} | {(1, c) for c in criteria} | {(2, b) for b in (*criteria, *ablated)}
    # rate 0.5 layer-wise (output 0.25): IMP's P_m of levels 1 and 2, kept in total by every global mask
    sizes = {"fc1.weight": 32 * 256, "fc2.weight": 16 * 32, "fc3.weight": 10 * 16}
    pm = pm_schedule(sizes, {"fc1.weight": 0.5, "fc2.weight": 0.5, "fc3.weight": 0.25}, 2)
    for (level, branch), s in summaries.items():
        assert s.remaining_percent == pytest.approx(pm[level]), (level, branch)
    # the masks are global: the criteria choose different shares per layer
    shares = {c: Mask.load(store.unit_mask_path(Unit(0, 2, c))).kept()["fc1.weight"] for c in criteria}
    assert len(set(shares.values())) > 2


def test_theta0_and_data_order_are_imps(run, tiny_cfg):
    from lth.experiments import run_imp
    from lth.fileio import load_weights

    cfg, store = run
    imp_cfg = replace(tiny_cfg, data=cfg.data, out_dir=str(store.root.parent / "imp"),
                      lottery=replace(tiny_cfg.lottery, levels=0))
    imp = run_imp(imp_cfg, progress=False, log=quiet)
    a, b = load_weights(store.init_path(0)), load_weights(imp.init_path(0))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # same θ_0, same data order, same budget: the dense trainings are the same training
    assert store.metrics(Unit(0, 0, "dense")) == imp.metrics(Unit(0, 0, "ticket"))


def test_ablations_do_what_their_names_say(run):
    from lth.fileio import load_weights

    cfg, store = run
    theta0 = load_weights(store.init_path(0))
    for c in ("snip", "grasp", "synflow", "magnitude_init"):
        base = Mask.load(store.unit_mask_path(Unit(0, 2, c)))
        shuffled = Mask.load(store.unit_mask_path(Unit(0, 2, f"{c}_shuffle")))
        assert shuffled.kept() == base.kept() and shuffled != base  # same per-layer counts, other positions
        assert Mask.load(store.unit_mask_path(Unit(0, 2, f"{c}_reinit"))) == base
        inverted = Mask.load(store.unit_mask_path(Unit(0, 2, f"{c}_invert")))
        assert sum(inverted.kept().values()) == sum(base.kept().values())
    # invert keeps the smallest |θ_0| (globally) where magnitude_init keeps the largest
    base = Mask.load(store.unit_mask_path(Unit(0, 2, "magnitude_init")))
    inv = Mask.load(store.unit_mask_path(Unit(0, 2, "magnitude_init_invert")))
    mags = {n: theta0[n].abs() for n in base}
    assert max(float(mags[n][inv[n]].max()) for n in inv) <= min(float(mags[n][base[n]].min()) for n in base)
    # reinit trains the same mask from a fresh θ_0: its step-0 network differs
    m0 = store.metrics(Unit(0, 2, "snip"))[0]["val_loss"]
    assert store.metrics(Unit(0, 2, "snip_reinit"))[0]["val_loss"] != m0
    assert store.metrics(Unit(0, 2, "snip_shuffle"))[0]["val_loss"] != m0


def test_show_and_json_work_as_for_imp(run, capsys):
    import json

    from lth.cli import main

    _, store = run
    assert main(["show", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert "magnitude_init_shuffle" in out and "smart_ratio" in out
    assert main(["show", str(store.root), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["levels"]
    assert {r["branch"] for r in rows if r["level"] == 2} >= {"synflow", "synflow_invert"}
    assert all("collapsed_layers" in r for r in rows if r["level"] > 0)


def test_layer_collapse_is_reported(tmp_path):
    """A criterion that scores one layer below all others leaves it empty: the run says so."""
    from lth.experiments import launch
    from lth.experiments.prune_at_init import show
    from lth.prune import CRITERIA, criterion

    @criterion("test_starve_fc2")
    def starve(ctx):
        order = {"fc1.weight": 1.0, "fc2.weight": -1.0, "fc3.weight": 2.0}  # fc3 whole, then fc1, fc2 nothing
        return {n: torch.full_like(ctx.weights[n], order[n]) for n in ctx.names}

    try:
        lines = []
        store = launch(tiny(tmp_path, criteria=("test_starve_fc2",), levels=(1,)), progress=False, log=lines.append)
        s = store.summary(Unit(0, 1, "test_starve_fc2"))
        assert s.extra["collapsed_layers"] == 1
        assert any("layer collapse" in line and "fc2.weight" in line for line in lines)
        assert "layer collapse: level 1 test_starve_fc2" in show(store)
    finally:
        del CRITERIA["test_starve_fc2"]


@pytest.mark.parametrize("change, message", [
    (dict(criteria=("snip", "biggest")), "unknown pruning criterion 'biggest'"),
    (dict(levels=(1, 40)), r"--pai.levels \[40\]: P_m stops changing"),
    (dict(scope="layerwise", criteria=("smart_ratio",)), "smart_ratio.*global selection"),
    (dict(ablations=("flip",)), "unknown ablation"),
    (dict(levels=(1,), ablation_levels=(2,)), "not in --pai.levels"),
])
def test_bad_input_is_refused_before_training(tmp_path, change, message):
    from lth.experiments import launch

    with pytest.raises(ConfigError, match=message):
        launch(tiny(tmp_path, **change), progress=False, log=quiet)
    assert not list((tmp_path / "runs").rglob("summary.json")) if (tmp_path / "runs").exists() else True


def test_layerwise_scope_needs_a_layerwise_schedule(tmp_path):
    from lth.experiments import launch

    cfg = tiny(tmp_path, scope="layerwise")
    with pytest.raises(ConfigError, match="--pai.scope layerwise.*--prune.strategy layerwise"):
        launch(replace(cfg, prune=replace(cfg.prune, strategy="global")), progress=False, log=quiet)


def test_sigkill_mid_training_then_resume_equals_uninterrupted(tmp_path):
    from resume_check import kill_and_resume

    cfg = tiny(tmp_path, criteria=("snip", "synflow"), levels=(1,), ablations=("shuffle",))
    cfg = replace(cfg, model=replace(cfg.model, hidden=(128, 64)),
                  train=replace(cfg.train, budget="200it", eval_every="10it"), checkpoint_seconds=0.0)
    kill_and_resume("prune_at_init", cfg, tmp_path, "level01/synflow/resume.pt")


def test_report_labels_prune_at_init_and_imp_runs_apart(run, tiny_cfg, tmp_path):
    from lth.experiments import run_imp
    from lth.report import build_report
    from lth.report.load import label_runs, load_run

    cfg, store = run
    imp = run_imp(replace(tiny_cfg, data=cfg.data, out_dir=str(tmp_path / "imp"),
                          lottery=LotteryConfig(levels=2, controls=("random_prune",))), progress=False, log=quiet)
    runs = [load_run(imp.root), load_run(store.root)]
    label_runs(runs)
    assert runs[0].label == "imp" and runs[1].label == "prune_at_init"
    report = build_report([imp.root, store.root], tmp_path / "report")
    names = {f.name for f in report.figures}
    assert {"fig-pai_vs_imp", "fig-pai_ablations", "fig-pai_layers", "fig-accuracy_vs_pm"} <= names
    assert not report.notes, report.notes
    html = report.html.read_text()
    assert "Pruning at initialization vs IMP" in html and "imp" in html


def test_presets_share_the_imp_presets_schedule():
    """A prune-at-init preset's levels have the P_m of the IMP preset's levels: same data, model, training and
    pruning schedule."""
    from lth import presets

    for pai, imp in (("mnist1d_mlp_pai", "mnist1d_mlp"), ("lenet_300_100_pai", "lenet_300_100_mnist")):
        a, b = presets.get(pai), presets.get(imp)
        assert (a.data, a.model, a.train, a.prune) == (b.data, b.model, b.train, b.prune)
        assert max(a.pai.levels) <= b.lottery.levels
