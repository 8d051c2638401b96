"""The experiments that study IMP's tickets (instability, transfer, early-bird, gradual): their measurements
against facts, resuming after a kill with identical results, refusals before any work, `lth show --json`
and the report; and the conv nets on 1x28x28 input."""

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import run_results

from lth.config import (
    DataConfig,
    ImpConfig,
    LotteryConfig,
    ModelConfig,
    PruneConfig,
    TrainConfig,
    config_hash,
)
from lth.experiments import launch
from lth.experiments.early_bird import EarlyBirdConfig, EarlyBirdSection
from lth.experiments.gradual import GradualConfig, GradualSection
from lth.experiments.instability import InstabilityConfig, InstabilitySection
from lth.experiments.instability import resolve as resolve_instability
from lth.experiments.transfer import TransferConfig, TransferSection
from lth.store import RunStore, Unit


def quiet(*_):
    pass


def base(tmp_path, **changes) -> dict:
    """A few-second IMP setting on the synthetic dataset (2 levels at 50%, 60 iterations)."""
    fields = dict(data=DataConfig(dataset="synthetic", data_dir=str(tmp_path / "data")),
                  model=ModelConfig(name="lenet_300_100", hidden=(32, 16)),
                  train=TrainConfig(optimizer="adam", lr=3e-3, batch_size=50, budget="60it", eval_every="10it"),
                  prune=PruneConfig(rate=0.5), lottery=LotteryConfig(levels=2, controls=()),
                  out_dir=str(tmp_path / "runs"), device="cpu", checkpoint_seconds=0.0)
    return {**fields, **changes}


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> RunStore:
    """A finished two-level IMP run that the experiments build on."""
    tmp = tmp_path_factory.mktemp("source")
    return launch(ImpConfig(**base(tmp)), progress=False, log=quiet)


def configs(tmp_path, source: RunStore) -> dict:
    sgd = replace(base(tmp_path)["train"], optimizer="sgd", lr=0.05)
    return {
        "instability": InstabilityConfig(**base(tmp_path), instability=InstabilitySection(
            source=str(source.root), levels=(0, 2), k=("0it", "20it"), points=5)),
        "transfer": TransferConfig(**base(tmp_path, train=sgd), transfer=TransferSection(source=str(source.root))),
        # No source: it trains the IMP run it needs in its own output folder.
        "early_bird": EarlyBirdConfig(**base(tmp_path), early_bird=EarlyBirdSection(eps=0.2, window=3)),
        "gradual": GradualConfig(**base(tmp_path), gradual=GradualSection(source=str(source.root), levels=(2,),
                                                                          every="5it")),
    }


class Killed(Exception):
    pass


def kill_training(monkeypatch, nth: int, at: int) -> None:
    """The `nth` training (1-based) of this process dies at step `at`, after at least one checkpoint."""
    import lth.train.loop as loop

    original, calls = loop.run_loop, []

    def run_loop(stepper, members, data, **kw):
        calls.append(1)
        if len(calls) == nth:
            def die(step, model):
                raise Killed
            members[0].hooks.save_at[at] = die
        return original(stepper, members, data, **kw)

    monkeypatch.setattr(loop, "run_loop", run_loop)


@pytest.mark.parametrize("name, nth", [("instability", 3), ("transfer", 4), ("early_bird", 4), ("gradual", 1)])
def test_killed_experiment_resumes_with_identical_results(name, nth, source, tmp_path, monkeypatch, capsys):
    clean = launch(configs(tmp_path / "clean", source)[name], progress=False, log=quiet)
    cfg = configs(tmp_path / "killed", source)[name]
    with monkeypatch.context() as m:
        kill_training(m, nth, at=30)
        with pytest.raises(Killed):
            launch(cfg, progress=False, log=quiet)
    assert list(Path(cfg.out_dir).rglob("resume.pt")), "the killed training left no state to resume from"
    resumed = launch(cfg, progress=False, log=quiet)
    assert resumed.root.name == clean.root.name
    killed_files, clean_files = run_results(resumed.root), run_results(clean.root)
    assert set(killed_files) == set(clean_files)
    assert [k for k in clean_files if killed_files[k] != clean_files[k]] == []
    assert not list(resumed.root.rglob("resume.pt"))

    # What `lth show --json` and the report see.
    from lth.cli import main
    from lth.report import build_report

    assert main(["show", str(resumed.root), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["experiment"] == name and shown["levels"]
    report = build_report([resumed.root], tmp_path / "report")
    assert report.figures and all(f.png.exists() for f in report.figures)
    assert not [n for n in report.notes if "missing" in n]


# -- instability ------------------------------------------------------------------------------------------
def test_instability_measures_every_level_branch_and_k(source, tmp_path):
    store = launch(configs(tmp_path, source)["instability"], progress=False, log=quiet)
    got = {(s.level, s.branch): s for s in store.summaries() if "barrier" in s.extra}
    assert set(got) == {(0, "dense_k0"), (0, "dense_k20")} | {
        (2, f"{b}_k{k}") for b in ("ticket", "reinit", "random_prune") for k in (0, 20)}
    for s in got.values():
        errors = s.extra["test_error"]
        assert len(errors) == 5 and s.extra["alpha"] == [0.0, 0.25, 0.5, 0.75, 1.0]
        assert s.extra["barrier"] == pytest.approx(max(errors) - (errors[0] + errors[-1]) / 2)
    # Copy a at k = 0 is the source's own training again: same θ_0, same data order, same mask.
    a = store.summary(Unit(0, 2, "ticket_k0_a"))
    assert a.final_test_acc == source.summary(Unit(0, 2, "ticket")).final_test_acc
    # θ_20 is the dense copy a's weights at step 20, which is the source's dense training at step 20.
    assert store.theta_path(0, 20).exists()


def test_instability_with_a_source_is_the_same_run_as_without(source, tmp_path):
    with_source = resolve_instability(configs(tmp_path, source)["instability"])
    own = InstabilityConfig(**base(tmp_path), instability=replace(with_source.instability, source=""))
    assert config_hash(with_source) == config_hash(own)


@pytest.mark.parametrize("section, message", [
    (dict(k=("60it",)), "--instability.k 60it is step 60, at or beyond the training budget of 60"),
    (dict(levels=(0, 5)), "level 5 is not in the source run"),
])
def test_instability_refuses_bad_input_before_any_work(source, tmp_path, section, message):
    cfg = configs(tmp_path, source)["instability"]
    cfg = replace(cfg, instability=replace(cfg.instability, **section))
    with pytest.raises(ValueError, match=message):
        launch(cfg, progress=False, log=quiet)
    assert not Path(cfg.out_dir).exists() or not list(Path(cfg.out_dir).iterdir())


def test_instability_cli_takes_the_source_as_bare_argument(source, tmp_path, capsys):
    from lth.cli import main

    code = main(["instability", str(source.root), "--instability.k", "100it", "--out", str(tmp_path)])
    assert code == 2 and "beyond the training budget" in capsys.readouterr().err


def test_a_flag_the_source_run_overrides_is_refused(source, tmp_path, capsys):
    from lth.cli import main

    code = main(["instability", str(source.root), "--train.lr", "0.5", "--out", str(tmp_path)])
    assert code == 2 and "--train.lr 0.5 is not used" in capsys.readouterr().err
    code = main(["gradual", str(source.root), "--lottery.replicates", "3", "--out", str(tmp_path)])
    assert code == 2 and "--lottery.replicates 3 is not used" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() and not [p for p in tmp_path.iterdir() if "-gradual-" in p.name]


# -- transfer -------------------------------------------------------------------------------------------------
def test_transfer_refuses_a_target_of_another_input_shape(source, tmp_path):
    cfg = configs(tmp_path, source)["transfer"]
    cfg = replace(cfg, data=replace(cfg.data, dataset="mnist1d"))
    fake = SimpleNamespace(input_shape=(40,), num_classes=10)
    with pytest.raises(ValueError, match=r"input \(1, 16, 16\).*mnist1d has input \(40,\)"):
        launch(cfg, data=fake, progress=False, log=quiet)
    assert not Path(cfg.out_dir).exists()


def test_transfer_refuses_a_target_that_is_the_source(source, tmp_path):
    cfg = replace(configs(tmp_path, source)["transfer"], train=base(tmp_path)["train"])
    with pytest.raises(ValueError, match="nothing would be transferred"):
        launch(cfg, progress=False, log=quiet)


def test_transfer_trains_the_source_ticket_and_three_controls(source, tmp_path):
    store = launch(configs(tmp_path, source)["transfer"], progress=False, log=quiet)
    keys = {(s.level, s.branch) for s in store.summaries()}
    assert keys == {(0, "dense")} | {(lv, b) for lv in (1, 2)
                                     for b in ("transfer", "target_ticket", "random_prune", "reinit")}
    from lth.fileio import load_weights
    from lth.prune import Mask

    # The transferred ticket starts from the source's mask and θ_0 (its first validation loss says so).
    assert Mask.load(store.mask_path(0, 2)) == Mask.load(source.mask_path(0, 2))
    first = store.metrics(Unit(0, 2, "transfer"))[0]["val_loss"]
    from lth.data import load
    from lth.models import build_model
    from lth.train import evaluate

    cfg = configs(tmp_path, source)["transfer"]
    data = load(cfg.data)
    net = build_model(cfg.model, input_shape=data.input_shape, num_classes=data.num_classes, seed=1)
    net.load_state_dict(load_weights(source.init_path(0)))
    Mask.load(source.mask_path(0, 2)).apply_(net)
    assert first == pytest.approx(evaluate(net, data.val.x, data.val.y)[0].item(), rel=1e-6)
    # The target's own IMP run (SGD) is a run of its own in the output folder.
    target = [p for p in Path(cfg.out_dir).iterdir() if "-imp-" in p.name]
    assert len(target) == 1 and json.loads((target[0] / "config.json").read_text())["config"]["train"]["optimizer"] == "sgd"


def test_transfer_reinitializes_an_output_layer_of_another_size(tmp_path):
    from lth.experiments.transfer import Transfer

    source = launch(ImpConfig(**base(tmp_path / "src", lottery=LotteryConfig(levels=1, controls=()))),
                    progress=False, log=quiet)
    cfg = TransferConfig(**base(tmp_path), transfer=TransferSection(source=str(source.root)))
    from lth.experiments.imp import ModelBuilder

    build = ModelBuilder(cfg.model, (1, 16, 16), 3)  # a 3-class target
    t = Transfer(cfg, RunStore.for_config(cfg), source, None, build, [1])
    start = t.transferred(0, 1)
    from lth.fileio import load_weights

    init = load_weights(source.init_path(0))
    assert start["fc3.weight"].shape == (3, 16) and torch.equal(start["fc1.weight"], init["fc1.weight"])
    mask = t.mask(0, 1, "transfer")
    src_mask = load_weights(source.mask_path(0, 1))
    assert mask["fc3.weight"].shape == (3, 16)
    assert int(mask["fc3.weight"].sum()) == round(src_mask["fc3.weight"].float().mean().item() * 48)


# -- early-bird and gradual --------------------------------------------------------------------------------
def test_early_bird_compares_its_ticket_with_imps(source, tmp_path):
    cfg = EarlyBirdConfig(**base(tmp_path), early_bird=EarlyBirdSection(source=str(source.root), eps=0.3, window=3))
    store = launch(cfg, progress=False, log=quiet)
    eb = store.summary(Unit(0, 2, "early_bird"))
    assert eb.extra["steps"] == [0, 10, 20, 30, 40, 50, 60]
    assert eb.extra["window_distance"][:2] == [None, None]
    assert eb.extra["mask_step"] in eb.extra["steps"][2:]  # the window holds 3 masks: the third is the first draw
    assert eb.extra["draw_step"] in (None, eb.extra["mask_step"])
    assert eb.extra["imp_find_iterations"] == 120 and eb.remaining_percent == pytest.approx(
        source.summary(Unit(0, 2, "ticket")).remaining_percent)
    assert store.summary(Unit(0, 2, "imp_ticket")).final_test_acc == source.summary(Unit(0, 2, "ticket")).final_test_acc


def test_gradual_reaches_imps_per_layer_counts_with_pruned_weights_zero(source, tmp_path):
    store = launch(configs(tmp_path, source)["gradual"], progress=False, log=quiet)
    from lth.fileio import load_weights
    from lth.prune import Mask

    imp = Mask.load(source.mask_path(0, 2))
    for branch, budget in (("gradual", 60), ("gradual_total", 180)):
        unit = Unit(0, 2, branch)
        mask = Mask.load(store.unit_mask_path(unit))
        assert mask.kept() == imp.kept() and mask != imp
        final = load_weights(store.final_path(unit))
        assert all(not final[n][~mask[n]].any() for n in mask)
        summary = store.summary(unit)
        assert summary.extra["budget_iterations"] == budget == summary.iterations
        # The early stop is read off the evaluations at the final sparsity only, never the denser network.
        assert summary.early_stop_step > summary.extra["prune_end"]


# -- conv nets on Fashion-MNIST's shape -------------------------------------------------------------------------
@pytest.mark.parametrize("name, convs, fc1_in", [("conv2", (64, 64), 64 * 14 * 14),
                                                 ("conv4", (64, 64, 128, 128), 128 * 7 * 7),
                                                 ("conv6", (64, 64, 128, 128, 256, 256), 256 * 3 * 3)])
def test_conv_nets_take_1x28x28_input(name, convs, fc1_in):
    from lth.models import build_model, count_weights

    net = build_model(ModelConfig(name=name), input_shape=(1, 28, 28), num_classes=10, seed=0)
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    channels = (1, *convs)
    conv = sum(9 * a * b for a, b in zip(channels, channels[1:]))
    assert net.fc1.in_features == fc1_in  # 28 -> 14 -> 7 -> 3: each 2x2 max pool floors the size
    assert count_weights(net) == conv + fc1_in * 256 + 256 * 256 + 256 * 10


def test_conv_presets_on_fashion_mnist_have_the_papers_settings():
    from lth import presets

    for name, lr, budget, conv_rate in (("conv2", 2e-4, "20000it", 0.1), ("conv4", 3e-4, "25000it", 0.1),
                                        ("conv6", 3e-4, "30000it", 0.15)):
        cfg = presets.get(f"{name}_fashion_mnist")
        assert (cfg.data.dataset, cfg.model.name, cfg.train.optimizer, cfg.train.lr, cfg.train.batch_size,
                cfg.train.budget) == ("fashion_mnist", name, "adam", lr, 60, budget)
        assert (cfg.prune.strategy, cfg.prune.rate, cfg.prune.conv_rate, cfg.prune.output_rate) == (
            "layerwise", 0.2, conv_rate, 0.1)
    rethinking = presets.get("rethinking_conv2_fashion_mnist")
    assert rethinking.train.lr == 10 * presets.get("conv2_fashion_mnist").train.lr
    assert rethinking.lottery.controls == ("reinit",)


def test_early_bird_distance_figure_draws_at_most_four_levels_first_and_last_included():
    from lth.report.early_bird import shown_levels

    assert shown_levels(list(range(1, 16))) == [1, 6, 10, 15]
    assert shown_levels([2, 5, 9]) == [2, 5, 9]
