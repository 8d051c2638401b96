"""Bad input gets one clear line, never a traceback, and never a run (issue 15, items 8-12).

The table runs each bad input through the real entry point, `lth.cli.main`, and asserts exit code 2, one line
on stderr that names the problem, no traceback, and no run folder made. Each row names the issue's item it
covers. Rows marked "sibling" are defects of the same class found while fixing those; rows marked "guard" were
already one clear line at e39281b (the commit the issue was filed against) and are kept so that they stay so.
Every other row failed there.
"""

import json
import signal
from pathlib import Path

import pytest
from torch import nn

import lth
from lth.cli import main
from lth.config import ImpConfig, LotteryConfig, PruneConfig, TrainConfig
from lth.errors import ConfigError, UserError
from lth.experiments import find_tickets, run_imp
from lth.prune import Mask, MaskError

TINY = ["--preset", "mnist1d_mlp", "--data.dataset", "synthetic", "--model.name", "lenet_300_100",
        "--model.hidden", "16", "--train.budget", "40it", "--train.eval_every", "20it", "--train.batch_size", "50",
        "--device", "cpu", "--quiet", "--no-report", "--compute.threads", "1"]

FILES = {  # config files, written into the test's folder; {marker} is a file a !!python tag would create
    "seed.yaml": "seed: 1.7\n",
    "lr.yaml": "train:\n  lr: abc\n",
    "levels.yaml": "lottery:\n  levels: '5'\n",
    "batch.yaml": "train:\n  batch_size: 1.5\n",
    "broken.yaml": "train: [1, 2\n",
    "broken.json": '{"train": ',
    "python.yaml": "train: !!python/object/apply:os.system ['touch {marker}']\n",
    "list.yaml": "- 1\n- 2\n",
    "typo.yaml": "train:\n  lrr: 0.1\n",
}

# (item, argv, what the one line must contain). {tmp}: the test's folder; RUN: a finished small run.
CASES = [
    ("8", ["run", *TINY, "--data.val_size", "0"], "--data.val_size"),
    ("8", ["run", *TINY, "--train.gamma", "-5"], "--train.gamma"),
    ("8", ["run", *TINY, "--checkpoint_seconds", "nan"], "--checkpoint_seconds"),
    ("8", ["train", *TINY, "--train.budget", "0it"], "--train.budget"),
    ("8", ["run", *TINY, "--train.lr", "nan"], "--train.lr"),
    ("8", ["run", *TINY, "--train.momentum", "-1"], "--train.momentum"),
    ("8", ["run", *TINY, "--train.weight_decay", "nan"], "--train.weight_decay"),
    ("8", ["run", *TINY, "--train.eval_every", "0it"], "--train.eval_every"),
    ("8 guard", ["run", *TINY, "--data.val_size", "100000"], "val_size"),
    ("8 guard", ["run", *TINY, "--train.batch_size", "100000"], "batch_size"),
    ("8 sibling", ["run", *TINY, "--compute.threads", "1000000"], "--compute.threads"),  # torch segfaulted
    ("9", ["run", *TINY, "--config", "{tmp}/seed.yaml"], "seed"),
    ("9", ["run", *TINY, "--config", "{tmp}/lr.yaml"], "train.lr"),
    ("9", ["run", *TINY, "--config", "{tmp}/levels.yaml"], "lottery.levels"),
    ("9", ["run", *TINY, "--config", "{tmp}/batch.yaml"], "train.batch_size"),
    ("9 guard", ["run", *TINY, "--config", "{tmp}/typo.yaml"], "train.lrr"),
    ("9 guard", ["run", *TINY, "--config", "{tmp}/list.yaml"], "list.yaml"),
    ("9 guard", ["run", *TINY, "--config", "{tmp}/missing.yaml"], "missing.yaml"),
    ("10", ["run", *TINY, "--lottery.levels", "1000000"], "--lottery.levels"),
    ("11", ["run", *TINY, "--device", "nonsense"], "--device"),
    ("11", ["run", *TINY, "--config", "{tmp}/broken.yaml"], "broken.yaml"),
    ("11", ["run", *TINY, "--config", "{tmp}/broken.json"], "broken.json"),
    ("11", ["run", *TINY, "--config", "{tmp}/python.yaml"], "python.yaml"),
    ("11", ["report", "RUN", "--out", "{tmp}/a-file"], "a-file"),
    ("11", ["report", "RUN", "--out", "{tmp}/a-file/report"], "a-file"),
    ("11", ["train", *TINY, "--data.dataset", "mnist", "--model.name", "lenet_300_100", "--data-dir",
            "{tmp}/data"], "train-images-idx3-ubyte.gz is not a file"),  # a folder where the file should be
    ("11", ["presets", "--bogus"], "--bogus"),
    ("11", ["models", "nope"], "nope"),
    ("11 sibling", ["run", *TINY, "--train.lr", "abc"], "--train.lr"),  # tyro's boxed errors
    ("11 sibling", ["run", *TINY, "--nonsense", "3"], "--nonsense"),
    ("11 sibling", ["run", *TINY, "--train.optimizer", "sgdd"], "sgdd"),
    ("11 sibling", ["run", *TINY, "--train.lr"], "--train.lr"),
    ("11 sibling", ["run", "--preset"], "--preset"),
    ("11 guard", ["run", "--preset", "lenet5"], "lenet5"),
    ("11 sibling", ["nope"], "nope"),
    ("11 sibling", ["show"], "run"),
    ("11 guard", ["show", "{tmp}/no-such-run"], "no-such-run"),
    ("11 guard", ["show", "{tmp}"], "config.json"),
    ("11 sibling", ["export", "RUN", "--level", "1", "--format", "onnx"], "onnx"),
    ("11 sibling", ["export", "RUN", "--level", "7", "--format", "dense"], "level"),
    ("11 sibling", ["sweep", "--grid", "train.lrr=1,2"], "train.lrr"),
]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Path:
    """A finished two-level run, made through the CLI."""
    out = tmp_path_factory.mktemp("small")
    assert main(["run", *TINY, "--lottery.levels", "2", "--out", str(out / "runs"), "--data-dir",
                 str(out / "data")]) == 0
    [run] = (out / "runs").iterdir()
    return run


@pytest.fixture
def deadline():
    """Fail instead of hanging (the old code hung on --lottery.levels 1000000)."""
    def expire(*_):
        raise TimeoutError("took more than 60 s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("item, argv, names", CASES, ids=[f"{c[0]}:{' '.join(c[1][-2:])}" for c in CASES])
def test_bad_input_is_one_line_without_traceback(item, argv, names, small_run, tmp_path, capsys, deadline):
    marker = tmp_path / "pwned"
    for name, text in FILES.items():
        (tmp_path / name).write_text(text.replace("{marker}", str(marker)))
    (tmp_path / "a-file").write_text("")
    (tmp_path / "data" / "mnist" / "train-images-idx3-ubyte.gz").mkdir(parents=True)
    argv = [str(small_run) if a == "RUN" else a.replace("{tmp}", str(tmp_path)) for a in argv]
    if argv[0] in ("run", "train"):
        argv += ["--out", str(tmp_path / "runs")]
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lth"), err
    assert names in lines[0], err
    assert not marker.exists()  # the !!python tag was not run
    assert not list(tmp_path.rglob("config.json"))  # refused before any run folder was made


def test_no_traceback_for_a_user_error_anywhere(monkeypatch, capsys):
    """Whatever raises a UserError, from any command, main() prints it in one line and returns 2; anything
    else is a bug and keeps its traceback."""
    import lth.cli as cli

    def fails(argv, prog):
        raise UserError("it went wrong\nover two lines")

    monkeypatch.setattr(cli, "commands", lambda: {"x": fails})
    assert main(["x"]) == 2
    assert capsys.readouterr().err == "lth x: error: it went wrong over two lines\n"


# -- the Python API: the same typed checks as the flags, before any work (items 9 and 12) ----------------

@pytest.mark.parametrize("changes, names", [
    ({5: 1}, "5"),  # 12
    ({"train.lr.x": 1}, "train.lr"),  # 9
    ({"train.lr": "abc"}, "train.lr"),  # 9
    ({"lottery.levels": 2.5}, "lottery.levels"),  # 9
    ({"lottery.levels": True}, "lottery.levels"),  # 9 sibling
    ({"train": 3}, "train"),  # 9 guard
    ({"": 1}, "''"),  # 9 sibling
])
def test_override_checks_keys_and_types(changes, names):
    with pytest.raises(ConfigError, match=names):
        lth.override(lth.presets.get("mnist1d_mlp"), changes)


@pytest.mark.parametrize("cfg, names", [
    (ImpConfig(seed=1.7), "seed"),  # 9: level 0 trained, then the run crashed
    (ImpConfig(train=TrainConfig(lr="abc")), "train.lr"),
    (ImpConfig(prune=PruneConfig(exclude=["fc1.weight"])), "prune.exclude"),
    (ImpConfig(lottery=LotteryConfig(replicates=2.0)), "lottery.replicates"),
])
def test_a_config_built_in_python_is_type_checked_before_any_work(cfg, names, tmp_path):  # 9 sibling
    from dataclasses import replace

    cfg = replace(cfg, out_dir=str(tmp_path / "runs"), device="cpu")
    with pytest.raises(ConfigError, match=names):
        run_imp(cfg, progress=False, log=lambda *_: None)
    assert not (tmp_path / "runs").exists()


def test_train_checks_its_config(data, mlp):  # 9 sibling: lth.train on a TrainConfig built in Python
    with pytest.raises(ConfigError, match="train.lr"):
        lth.train(mlp(data), data, TrainConfig(lr="abc"), progress=False)
    with pytest.raises(ConfigError, match="--train.budget"):
        lth.train(mlp(data), data, TrainConfig(budget="0it"), progress=False)


def test_mask_load_refuses_a_weights_file_and_a_mask_missing_a_layer(small_run, tmp_path):  # 12
    with pytest.raises(MaskError, match="not a mask"):
        Mask.load(small_run / "rep0" / "init.safetensors")
    mask = Mask.load(small_run / "rep0" / "level01" / "mask.safetensors")
    Mask({n: t for n, t in mask.items() if n != "fc2.weight"}).save(tmp_path / "partial.safetensors")
    model = nn.Sequential()
    model.fc1, model.fc2 = nn.Linear(*mask["fc1.weight"].shape[::-1]), nn.Linear(*mask["fc2.weight"].shape[::-1])
    with pytest.raises(MaskError, match="fc2.weight"):
        Mask.load(tmp_path / "partial.safetensors", model)


def _toy_train(model, mask):
    return {"final_test_acc": 0.5}


def test_find_tickets_under_one_name_keeps_two_models_apart(tmp_path):  # 12
    def small():
        return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))

    def wide():
        return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))

    lottery = LotteryConfig(levels=1, controls=())
    a = find_tickets(small, _toy_train, name="net", lottery=lottery, out_dir=str(tmp_path), log=lambda *_: None)
    b = find_tickets(wide, _toy_train, name="net", lottery=lottery, out_dir=str(tmp_path), log=lambda *_: None)
    assert a.root != b.root
    assert Mask.load(b.level_dir(0, 1) / "mask.safetensors")["0.weight"].shape == (16, 4)


def test_a_train_fn_that_returns_a_list_is_a_user_error(tmp_path):  # 12
    with pytest.raises(UserError, match="train_fn must return a dict"):
        find_tickets(lambda: nn.Sequential(nn.Linear(4, 2)), lambda model, mask: [0.5], name="lst",
                     lottery=LotteryConfig(levels=1, controls=()), out_dir=str(tmp_path), log=lambda *_: None)


def test_report_of_runs_whose_names_hold_dollar_signs(small_run, tmp_path, capsys):  # 11: mathtext crashed
    import shutil

    runs = []
    for name in ("a$x^{$", "b$\\frac$"):
        runs.append(tmp_path / f"{name}-{small_run.name.rsplit('-', 1)[1]}")
        shutil.copytree(small_run, runs[-1])
    assert main(["report", *map(str, runs), "--out", str(tmp_path / "report")]) == 0
    assert "a$x^{$" in (tmp_path / "report" / "report.html").read_text()
    assert len(list((tmp_path / "report").glob("fig-*.png"))) >= 4


def test_config_file_errors_name_the_file(tmp_path):  # 11
    from lth.cli import resolve_config

    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  momentum: [1]\n")
    with pytest.raises(ConfigError, match="bad.yaml.*train.momentum"):
        resolve_config(["--config", str(bad)], "lth run")
    json_file = tmp_path / "c.json"
    json_file.write_text(json.dumps({"lottery": {"levels": 1.5}}))
    with pytest.raises(ConfigError, match="c.json.*lottery.levels"):
        resolve_config(["--config", str(json_file)], "lth run")


def test_help_still_prints_and_exits_zero(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "--help"])
    assert e.value.code in (0, None) and "--train.lr" in capsys.readouterr().out
    assert main(["presets"]) == 0


def test_report_into_a_read_only_folder_is_one_line(small_run, tmp_path, capsys, monkeypatch):  # item 11
    import errno
    import os

    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    if os.geteuid() == 0:  # root writes anyway: refuse writes in the folder the way a read-only mount does
        real_open = os.open

        def read_only(path, flags, *args, **kwargs):
            if str(path).startswith(str(folder)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", read_only)
    capsys.readouterr()
    assert main(["report", str(small_run), "--out", str(folder)]) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and len(err.strip().splitlines()) == 1
    assert str(folder) in err and "writable folder" in err
    folder.chmod(0o755)


@pytest.mark.parametrize("box", [
    "╭─ Value error ──────────╮\n│ Error parsing --train.lr: could not │\n│ convert 'abc'   │\n"
    "│ ──────────── │\n│ Argument helptext: │\n╰────────────╯\n",
    " Value error          \n ----------- \n  Error parsing --train.lr: could not  \n  convert 'abc'  \n"
    "  -----------\n  Argument helptext:  \n",
])
def test_tyros_boxed_errors_become_one_line(box):  # item 11 sibling: both of tyro's box styles
    from lth.cli import _unbox

    assert _unbox(box) == "Error parsing --train.lr: could not convert 'abc'"


def test_an_old_config_file_with_a_non_mapping_section_is_a_config_error():
    from lth.config import ImpConfig
    from lth.config.parse import from_dict
    from lth.errors import ConfigError

    with pytest.raises(ConfigError):
        from_dict(ImpConfig, {"train": {"amp": True}, "compute": 3})
