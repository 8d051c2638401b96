import gzip
import json
import shutil
import urllib.error
from pathlib import Path

import pytest

from lth import presets
from lth.cli import main, resolve_config
from lth.config import ExperimentConfig, config_hash, from_dict

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"

TINY = ["--preset", "mnist1d_mlp", "--data.dataset", "synthetic", "--model.name", "lenet_300_100",
        "--model.hidden", "16", "--train.budget", "40it", "--train.eval_every", "20it",
        "--train.batch_size", "50", "--device", "cpu", "--quiet"]


def test_presets_are_listed_with_their_settings(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in ("mnist1d_mlp", "lenet_300_100_mnist", "conv2_cifar10", "conv4_cifar10", "conv6_cifar10",
                 "conv2_dropout_cifar10", "vgg19_cifar10", "resnet20_cifar10"):
        assert name in out
    assert "adam lr 0.0012, batch 60, 50000it" in out


def test_presets_match_the_facts_sheet():
    lenet = presets.get("lenet_300_100_mnist")
    assert (lenet.train.optimizer, lenet.train.lr, lenet.train.batch_size, lenet.train.budget) == ("adam", 1.2e-3, 60, "50000it")
    conv6 = presets.get("conv6_cifar10")
    assert (conv6.prune.conv_rate, conv6.prune.rate, conv6.prune.output_rate) == (0.15, 0.2, 0.1)
    vgg = presets.get("vgg19_cifar10")
    assert (vgg.prune.strategy, vgg.prune.exclude, vgg.train.budget, vgg.train.milestones) == (
        "global", ("fc.weight",), "160ep", ("80ep", "120ep"))
    resnet = presets.get("resnet20_cifar10")
    assert resnet.prune.exclude == ("fc.weight", "*shortcut*") and resnet.train.milestones == ("20000it", "25000it")


def test_precedence_preset_file_flags(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  lr: 0.5\n  budget: 10it\nlottery:\n  levels: 3\n")
    cfg, _ = resolve_config(["--preset", "lenet_300_100_mnist", "--config", str(f), "--train.lr", "0.25",
                             "--data-dir", "/d", "--out", "/o"], "lth run")
    assert cfg.train.lr == 0.25 and cfg.train.budget == "10it" and cfg.lottery.levels == 3
    assert cfg.train.batch_size == 60 and cfg.model.name == "lenet_300_100"
    assert cfg.data.data_dir == "/d" and cfg.out_dir == "/o" and cfg.preset == "lenet_300_100_mnist"


def test_unknown_key_in_a_config_file_is_an_error():
    with pytest.raises(ValueError, match="unknown config key.*train.lrr"):
        from_dict(ExperimentConfig, {"train": {"lrr": 1}})


def test_hash_ignores_where_and_how_but_not_what():
    a = presets.get("mnist1d_mlp")
    b = from_dict(ExperimentConfig, {"device": "cuda", "out_dir": "x", "data": {"data_dir": "/y"}}, base=a)
    c = from_dict(ExperimentConfig, {"train": {"lr": 0.1}}, base=a)
    assert config_hash(a) == config_hash(b) != config_hash(c)


def test_unknown_preset_and_bad_rate_fail_before_work(tmp_path, capsys):
    assert main(["run", "--preset", "lenet5", "--out", str(tmp_path)]) == 2
    assert "unknown preset 'lenet5'" in capsys.readouterr().err
    assert main(["run", *TINY, "--prune.rate", "1.2", "--out", str(tmp_path)]) == 2
    assert "fraction in (0, 1)" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_train_writes_run_folder(tmp_path, capsys):
    assert main(["train", *TINY, "--out", str(tmp_path), "--data-dir", str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out
    assert "lr: " in out and "early stop" in out  # the resolved config, then the summary
    [run] = [p for p in tmp_path.iterdir() if p.name != "data"]
    d = run / "rep0" / "level00" / "dense"
    for f in ("metrics.csv", "metrics.json", "summary.json", "final.safetensors", "init.safetensors"):
        assert (d / f).exists(), f
    assert json.loads((run / "config.json").read_text())["config"]["train"]["budget"] == "40it"
    assert [r["step"] for r in json.loads((d / "metrics.json").read_text())] == [0, 20, 40]


def test_run_then_show_and_show_json(tmp_path, capsys):
    args = [*TINY, "--lottery.levels", "1", "--out", str(tmp_path), "--data-dir", str(tmp_path / "data")]
    assert main(["run", *args]) == 0
    printed = capsys.readouterr().out
    [run] = [p for p in tmp_path.iterdir() if p.name != "data"]
    assert main(["show", str(run)]) == 0
    shown = capsys.readouterr().out
    for line in ("dense", "ticket", "reinit", "random_prune"):
        assert line in printed and line in shown
    assert main(["show", str(run), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = data["levels"]
    assert [(r["level"], r["branch"]) for r in rows] == [(0, "dense"), (1, "ticket"), (1, "reinit"), (1, "random_prune")]
    assert set(rows[1]["early_stop_test_acc"]) == {"mean", "min", "max"}
    assert rows[1]["remaining_percent"] < 100


def test_truncated_idx_fails_at_once_with_a_fix(tmp_path, capsys):
    if not SHARED_MNIST.exists():
        pytest.skip("shared MNIST files not present")
    d = tmp_path / "mnist"
    shutil.copytree(SHARED_MNIST, d)
    raw = gzip.decompress((d / "t10k-images-idx3-ubyte.gz").read_bytes())
    (d / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[: len(raw) // 2]))
    code = main(["train", "--preset", "lenet_300_100_mnist", "--data-dir", str(d), "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and "t10k-images-idx3-ubyte.gz" in err


def test_offline_cifar10_fails_at_once_naming_files_and_option(tmp_path, capsys, monkeypatch):
    import lth.data.download as dl

    def offline(*a, **k):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(dl, "urlopen", offline)
    code = main(["train", "--preset", "conv2_cifar10", "--data-dir", str(tmp_path / "data"),
                 "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2
    assert "cifar-10" in err.lower() and "--data-dir" in err
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("summary.json"))


def test_python_api_override_and_entry_points():
    import lth

    cfg = lth.override(lth.presets.get("mnist1d_mlp"), {"lottery.levels": 5, "train": {"lr": 0.5}})
    assert cfg.lottery.levels == 5 and cfg.train.lr == 0.5 and cfg.train.batch_size == 100
    with pytest.raises(ValueError, match="unknown config key"):
        lth.override(cfg, {"lottery.level": 5})
    assert callable(lth.run_imp) and callable(lth.find_tickets) and callable(lth.train)


def test_extras_that_are_not_installed_are_refused_with_the_pip_command(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    assert main(["run", *TINY, "--executor", "ray", "--out", str(tmp_path)]) == 2
    assert "--executor ray needs Ray, which is not installed here: pip install 'lth[ray]'" in capsys.readouterr().err
    assert main(["train", *TINY, "--log", "tensorboard", "--out", str(tmp_path)]) == 2
    assert "pip install 'lth[tensorboard]'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_executor_flags_are_checked_before_any_work(tmp_path, capsys):
    cfg, _ = resolve_config(["--executor", "ray", "--executor.cpus_per_task", "2"], "lth run")
    assert cfg.executor.kind == "ray" and cfg.executor.cpus_per_task == 2 and cfg.executor.threads(cfg.compute) == 2
    for flags, message in ((["--executor.address", "10.0.0.1:6379"], "joins a Ray cluster: add --executor ray"),
                           (["--executor=ray", "--executor.gpus_per_task", "1.5"], "whole number of GPUs"),
                           (["--executor", "ray", "--device", "cuda"], "needs --executor.gpus_per_task > 0")):
        assert main(["run", *TINY, *flags, "--out", str(tmp_path)]) == 2
        assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
