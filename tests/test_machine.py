"""lth on a real machine: the CPU thread count a run's trainings use, and a machine that is already busy
(issue 15, items 13 and 14)."""

import json
import os
import subprocess
import sys
import warnings
from dataclasses import replace

import pytest

from lth.cli import main
from lth.errors import BusyMachineWarning
from lth.experiments import run_imp
from lth.store import RunStore


def quiet(*_):
    pass


def test_a_thread_count_change_between_trainings_warns(tiny_cfg):  # item 13
    one = replace(tiny_cfg, lottery=replace(tiny_cfg.lottery, levels=1))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # a run that keeps its thread count gets no warning
        warnings.simplefilter("ignore", BusyMachineWarning)
        store = run_imp(one, progress=False, log=quiet)
        run_imp(one, progress=False, log=quiet)
    path = store.root / "config.json"
    record = json.loads(path.read_text())
    import torch

    assert record["threads"] == torch.get_num_threads()  # the count the run started with
    path.write_text(json.dumps({**record, "threads": 7}))  # as if its first trainings ran with 7 threads
    with pytest.warns(UserWarning, match="used 7 CPU threads.*--compute.threads 7"):
        run_imp(tiny_cfg, progress=False, log=quiet)  # level 2: new trainings, with this process's count
    assert json.loads(path.read_text())["threads"] == 7  # still the count it started with


def test_a_run_with_no_training_yet_takes_the_new_thread_count(tiny_cfg):  # item 13
    store = RunStore.for_config(tiny_cfg)
    with store:
        assert store.note_threads(3) is None
        assert store.note_threads(5) is None  # nothing trained yet: nothing to differ from
        assert store.record()["threads"] == 5


def test_the_thread_count_warning_is_one_line_on_the_cli(tmp_path, capsys):  # item 13
    def run(levels: int) -> int:
        return main(["run", "--preset", "mnist1d_mlp", "--data.dataset", "synthetic", "--model.name",
                     "lenet_300_100", "--model.hidden", "16", "--train.budget", "20it", "--train.eval_every", "20it",
                     "--device", "cpu", "--quiet", "--no-report", "--lottery.levels", str(levels), "--out",
                     str(tmp_path / "runs"), "--data-dir", str(tmp_path / "data")])

    assert run(0) == 0
    [folder] = (tmp_path / "runs").iterdir()
    record = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**record, "threads": 7}))
    capsys.readouterr()
    assert run(1) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lth run: warning: ") and "7 CPU threads" in err[0]


@pytest.mark.parametrize("load, busy", [(0.0, False), (None, True)])
def test_a_busy_machine_is_warned_about(load, busy, tiny_cfg, monkeypatch):  # item 14
    cores = os.cpu_count() or 1
    monkeypatch.setattr(os, "getloadavg", lambda: (cores + 0.5 if load is None else load, 0.0, 0.0))
    cfg = replace(tiny_cfg, lottery=replace(tiny_cfg.lottery, levels=0))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        run_imp(cfg, progress=False, log=quiet)
    found = [w for w in seen if issubclass(w.category, BusyMachineWarning)]
    assert bool(found) == busy
    if busy:
        assert f"on {cores} cores" in str(found[0].message) and "--compute.threads" in str(found[0].message)


def test_a_machine_without_a_load_average_is_not_an_error(tiny_cfg, monkeypatch):  # item 14
    def unavailable():
        raise OSError("no load average here")

    monkeypatch.setattr(os, "getloadavg", unavailable)
    run_imp(replace(tiny_cfg, lottery=replace(tiny_cfg.lottery, levels=0)), progress=False, log=quiet)


@pytest.mark.parametrize("given, expected", [({}, "None 3000"), ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE None"),
                                             ({"OMP_WAIT_POLICY": "PASSIVE"}, "PASSIVE None"),
                                             ({"GOMP_SPINCOUNT": "0"}, "None 0")])
def test_openmp_threads_spin_briefly_unless_told_otherwise(given, expected):  # item 14
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")} | given
    # Set before lth imports torch: libgomp reads it when it loads.
    code = "import os, lth; print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected
