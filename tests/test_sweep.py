"""`lth sweep` and the multi-value shorthand: one run per combination, a killed sweep resumes without redoing
finished runs, and a grid naming an unknown field is refused before anything runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lth.cli import main

TINY = ["--preset", "mnist1d_mlp", "--data.dataset", "synthetic", "--model.name", "lenet_300_100",
        "--model.hidden", "16", "--train.batch_size", "50", "--train.eval_every", "20it", "--lottery.levels", "1",
        "--lottery.controls", "--device", "cpu", "--compute.threads", "1", "--quiet", "--no-report"]


def test_a_grid_naming_an_unknown_field_is_refused(tmp_path, capsys):
    assert main(["sweep", "--grid", "train.lrr=1e-3,3e-3", *TINY, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--grid train.lrr: no such config field in experiment 'imp'" in err
    assert main(["sweep", "--grid", "train.lr", *TINY, "--out", str(tmp_path)]) == 2
    assert "--grid takes KEY=V1,V2" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_a_grid_whose_values_name_one_run_folder_is_refused(tmp_path, capsys):
    """Levels extend a run and threads are not part of it: such a grid would run one folder twice."""
    tiny = [a for a in TINY if a not in ("--lottery.levels", "--compute.threads")]
    tiny.remove("1")
    tiny.remove("1")
    for argv in (["run", "--lottery.levels", "1", "2"], ["run", "--compute.threads", "1", "2"]):
        assert main([*argv, *tiny, "--out", str(tmp_path)]) == 2
        assert "give one run folder" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_a_killed_sweep_restarts_and_skips_finished_runs(tmp_path):
    out, data = tmp_path / "runs", tmp_path / "data"
    cmd = [sys.executable, "-m", "lth", "sweep", "--grid", "train.lr=3e-3,1e-2", *TINY, "--train.budget", "400it",
           "--checkpoint_seconds", "0", "--out", str(out), "--data-dir", str(data)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline, first = time.time() + 120, None
    while time.time() < deadline and proc.poll() is None:  # kill once the second run is under way
        runs = sorted(out.iterdir()) if out.exists() else []
        done = [r for r in runs if len(list(r.rglob("summary.json"))) == 2]
        if len(runs) == 2 and len(done) == 1 and list(out.rglob("resume.pt")):
            first = done[0]
            break
        time.sleep(0.02)
    assert first is not None and proc.poll() is None, "the sweep was not caught between its runs"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p: p.stat().st_mtime_ns for p in first.rglob("summary.json")}
    restarted = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    assert {p: p.stat().st_mtime_ns for p in first.rglob("summary.json")} == finished  # not trained again
    assert all(len(list(r.rglob("summary.json"))) == 2 for r in out.iterdir())
    assert "[2/2] train.lr=0.01" in restarted.stdout
