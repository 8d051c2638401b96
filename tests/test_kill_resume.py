"""The kill-and-resume guarantee (issue 15): one run killed with SIGKILL several times, at random moments, and
resumed each time, ends with exactly the results of an uninterrupted run: every summary, every metrics.csv,
every mask and weights file, bit for bit."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace

from conftest import run_results

from lth.experiments import run_imp

KILLS = 4


def test_several_sigkills_at_random_moments_then_resume_equals_uninterrupted(tiny_cfg, tmp_path):
    # Dropout exercises the saved RNG state; a checkpoint at every evaluation puts many writes in the way.
    cfg = replace(tiny_cfg, model=replace(tiny_cfg.model, hidden=(64, 32), dropout=0.2),
                  train=replace(tiny_cfg.train, budget="120it", eval_every="10it"), checkpoint_seconds=0.0)
    started = time.perf_counter()
    clean = run_imp(replace(cfg, out_dir=str(tmp_path / "clean")), progress=False, log=lambda *_: None).root
    work = time.perf_counter() - started  # about how long the run's own work takes
    trainings = len(list(clean.rglob("summary.json")))

    config = tmp_path / "cfg.json"
    d = asdict(cfg)
    d.pop("out_dir"), d.pop("preset")
    config.write_text(json.dumps(d))
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "lth.cli", "run", "--quiet", "--no-report", "--config", str(config), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rng = random.Random(15)
    landed = 0
    for _ in range(KILLS):
        done = len(list(out.rglob("summary.json")))
        if done == trainings:
            break
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        # Its work starts once it holds the run folder's lock (before that it only imports and loads data).
        while proc.poll() is None and time.time() < deadline:
            if any(lock.read_text() == f"process {proc.pid}" for lock in out.glob("*/.lock")):
                break
            time.sleep(0.01)
        # A random moment within the first 60% of what is left, so that the kill lands before the run ends.
        time.sleep(rng.uniform(0, 0.6) * work * (1 - done / trainings))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            landed += 1
        proc.wait()
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr.read().decode()
    assert landed >= KILLS - 1, f"only {landed} kills landed before the run finished"
    final = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr

    [killed] = out.iterdir()
    assert killed.name.split("-")[-1] == clean.name.split("-")[-1]  # the same config (the CLI names it by preset)
    assert not list(killed.rglob("resume.pt")) and not list(killed.rglob("*.tmp"))
    a, b = run_results(killed), run_results(clean)
    assert set(a) == set(b) and len(a) > trainings
    for key in b:
        assert a[key] == b[key], key

