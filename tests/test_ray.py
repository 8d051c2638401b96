"""The Ray executor, on one local Ray instance for the module: 2 CPUs, bound to 127.0.0.1, a small object
store. A 2-replicate, 2-level run with both controls prints, stores and reports exactly what the local
executor does, bit for bit on the CPU (one thread per training in both); a worker killed mid-training is
replaced and the run ends with the same results; a UserError in a task fails at once and is not retried."""

from __future__ import annotations

import csv
import io
import json
import os
import threading
import time
from pathlib import Path

import pytest

# A local instance serves this machine only: bind it to the loopback address (read when ray is imported).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
pytest.importorskip("ray", reason="the Ray executor's tests need Ray: pip install 'lth[ray]'")

from lth.cli import main  # noqa: E402
from lth.config import ComputeConfig, ExecutorConfig  # noqa: E402
from lth.errors import ConfigError  # noqa: E402

ARGS = ["--data.dataset", "synthetic", "--model.name", "lenet_300_100", "--model.hidden", "32", "16",
        "--train.batch_size", "50", "--train.lr", "3e-3", "--train.eval_every", "20it", "--prune.rate", "0.5",
        "--device", "cpu", "--compute.threads", "1"]


@pytest.fixture(scope="module")
def ray_instance():
    import ray

    ray.init(address="local", num_cpus=2, object_store_memory=80 * 2**20, include_dashboard=False,
             logging_level="WARNING")
    assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
    yield ray
    ray.shutdown()


def table(out: str) -> list[str]:
    """The per-level table lines of `lth run`'s output."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("level   P_m %"))
    return [line for line in lines[start:] if line[:1] in (" ", "l") and "report" not in line][:8]


def files(root: Path) -> dict[str, object]:
    """Every result file of a run: summaries without their timing, metrics, weights and masks (bytes)."""
    out: dict[str, object] = {}
    for p in sorted(root.rglob("summary.json")):
        s = json.loads(p.read_text())
        s.pop("seconds")
        out[str(p.relative_to(root))] = s
    for pattern in ("metrics.csv", "*.safetensors", "mask.json"):
        for p in sorted(root.rglob(pattern)):
            if "report" not in p.parts:
                out[str(p.relative_to(root))] = p.read_bytes()
    return out


def shown(root: Path, capsys) -> dict:
    """`lth show --json` without what says where and how it ran (the folder, the executor) and the timing."""
    assert main(["show", str(root), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    data.pop("run")
    for key in ("out_dir", "executor"):
        data["config"].pop(key)
    for row in data["levels"]:
        row.pop("seconds")
    return data


def report_table(root: Path) -> list[dict]:
    rows = list(csv.DictReader(io.StringIO((root / "report" / "summary.csv").read_text())))
    return [{k: v for k, v in r.items() if "seconds" not in k and k != "run"} for r in rows]


def test_a_run_on_ray_equals_the_local_run(ray_instance, tmp_path, capsys):
    common = [*ARGS, "--lottery.replicates", "2", "--lottery.levels", "2", "--train.budget", "60it",
              "--data-dir", str(tmp_path / "data")]
    assert main(["run", *common, "--quiet", "--out", str(tmp_path / "local")]) == 0
    local_out = capsys.readouterr().out
    assert main(["run", *common, "--executor", "ray", "--out", str(tmp_path / "ray")]) == 0
    captured = capsys.readouterr()
    assert "ray: 14 trainings done, 0 running" in captured.err  # the progress line, on stderr
    [local] = (tmp_path / "local").iterdir()
    [remote] = (tmp_path / "ray").iterdir()
    assert local.name == remote.name
    assert json.loads((remote / "config.json").read_text())["config"]["executor"]["kind"] == "ray"

    assert table(captured.out) == table(local_out) and len(table(local_out)) == 8
    assert files(remote) == files(local)
    assert len([k for k in files(local) if k.endswith("summary.json")]) == 14
    assert shown(remote, capsys) == shown(local, capsys)
    assert report_table(remote) == report_table(local)


def test_a_killed_worker_is_replaced_and_the_run_ends_alike(ray_instance, tmp_path):
    from dataclasses import replace

    from lth.cli import resolve_config
    from lth.executors.ray import RayExecutor
    from lth.experiments import launch

    cfg, _ = resolve_config([*ARGS, "--train.budget", "400it", "--train.eval_every", "10it", "--lottery.levels", "1",
                             "--lottery.controls", "reinit", "--checkpoint_seconds", "0",
                             "--data-dir", str(tmp_path / "data")], "lth run")
    local = launch(replace(cfg, out_dir=str(tmp_path / "local")), progress=False, log=lambda _: None)
    executor = RayExecutor(ExecutorConfig(kind="ray"), compute=ComputeConfig(threads=1), device="cpu",
                           progress=False)
    killed: list[str] = []

    def kill_a_level_1_training() -> None:
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            for key, pid in ray_instance.get(executor.tally.workers.remote()).items():
                if key.startswith("rep0/level01") and list((tmp_path / "ray").rglob(f"{key}/resume.pt")):
                    os.kill(pid, 9)
                    killed.append(key)
                    break
            time.sleep(0.02)

    watcher = threading.Thread(target=kill_a_level_1_training)
    watcher.start()
    try:
        remote = launch(replace(cfg, out_dir=str(tmp_path / "ray"), executor=ExecutorConfig(kind="ray")),
                        progress=False, log=lambda _: None, executor=executor)
    finally:
        watcher.join()
        executor.close()
    assert killed, "no level-1 training was caught running"
    assert files(remote.root) == files(local.root)


def test_a_user_error_in_a_task_fails_at_once_and_is_not_retried(ray_instance, tmp_path):
    from lth.executors.ray import RayExecutor

    executor = RayExecutor(ExecutorConfig(kind="ray", max_retries=3), progress=False)
    counter = tmp_path / "attempts"

    def attempt(path: Path, error: type) -> int:
        n = int(path.read_text()) + 1 if path.exists() else 1
        path.write_text(str(n))
        if n == 1:
            raise error("--train.lr must be a finite number > 0, got -1.0")
        return n

    try:
        with pytest.raises(ConfigError, match=r"^--train.lr must be a finite number > 0, got -1.0$"):
            executor.gather([executor.submit(attempt, counter, ConfigError)])
        assert counter.read_text() == "1"
        transient = tmp_path / "transient"
        assert executor.gather([executor.submit(attempt, transient, OSError)]) == [2]  # I/O errors are retried
    finally:
        executor.close()


def test_an_unreachable_address_is_refused_within_seconds(ray_instance, tmp_path, capsys):
    import socket

    with socket.socket() as s:  # a port on this machine where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.time()
    code = main(["run", *ARGS, "--executor", "ray", "--executor.address", f"127.0.0.1:{port}",
                 "--out", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "data")])
    assert code == 2 and time.time() - t0 < 15
    assert f"--executor.address 127.0.0.1:{port}: no Ray cluster answers there" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_a_sweep_runs_through_ray(ray_instance, tmp_path, capsys):
    assert main(["sweep", "--grid", "lottery.rewind=0it,20it", *ARGS, "--train.budget", "40it", "--lottery.levels",
                 "1", "--lottery.controls", "--executor", "ray", "--no-report", "--quiet",
                 "--out", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out
    assert out.index("[1/2] lottery.rewind=0it") < out.index("[2/2] lottery.rewind=20it")
    runs = sorted(p for p in (tmp_path / "runs").iterdir())
    assert len(runs) == 2 and all(len(list(r.rglob("summary.json"))) == 2 for r in runs)


def test_lth_train_on_ray_equals_lth_train(ray_instance, tmp_path, capsys):
    dense = [a for i, a in enumerate(ARGS) if "--prune.rate" not in ARGS[max(0, i - 1):i + 1]]
    common = [*dense, "--train.budget", "40it", "--quiet", "--data-dir", str(tmp_path / "data")]
    assert main(["train", *common, "--out", str(tmp_path / "local")]) == 0
    assert main(["train", *common, "--executor", "ray", "--out", str(tmp_path / "ray")]) == 0
    out = capsys.readouterr().out
    [local], [remote] = (tmp_path / "local").iterdir(), (tmp_path / "ray").iterdir()
    assert files(remote) == files(local) and len(files(local)) == 4
    assert out.count("dense lenet_300_100 on synthetic: 40 iterations") == 2
