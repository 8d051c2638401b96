"""Kill a run with SIGKILL while a training has resumable state, resume it, and check that every result equals an
uninterrupted run's (the experiments' resume tests share this)."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path


def _results(root: Path) -> dict:
    out = {}
    for p in sorted(root.rglob("summary.json")):
        s = json.loads(p.read_text())
        s.pop("seconds")
        out[str(p.relative_to(root))] = s
    for pattern in ("metrics.csv", "*.safetensors"):
        for p in sorted(root.rglob(pattern)):
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


def kill_and_resume(command: str, cfg, tmp_path, partial_glob: str, check_killed=None) -> None:
    """Run `lth COMMAND` with cfg, SIGKILL it once a training matching `partial_glob` has resumable state,
    resume it, and compare every result with an uninterrupted run's. `check_killed(root)` looks at the killed
    run's folder before it resumes."""
    config_file = tmp_path / "cfg.json"
    d = asdict(cfg)
    d.pop("out_dir"), d.pop("preset")
    config_file.write_text(json.dumps(d))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "lth.cli", command, "--quiet", "--no-report", "--config", str(config_file)]
    killed_out = tmp_path / "killed"
    proc = subprocess.Popen(cmd + ["--out", str(killed_out)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if list(killed_out.rglob(partial_glob)):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed: " + proc.stderr.read().decode()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    [root] = killed_out.iterdir()
    if check_killed is not None:
        check_killed(root)
    resumed = subprocess.run(cmd + ["--out", str(killed_out)], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    clean_out = tmp_path / "clean"
    assert subprocess.run(cmd + ["--out", str(clean_out)], env=env, capture_output=True).returncode == 0
    [clean_root] = clean_out.iterdir()
    assert clean_root.name == root.name
    killed, clean = _results(root), _results(clean_root)
    assert set(killed) == set(clean)
    for key in clean:
        assert killed[key] == clean[key], key
