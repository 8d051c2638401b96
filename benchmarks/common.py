"""Shared helpers of the benchmarks: machine description, timing statistics, writing JSON + Markdown."""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import lth  # noqa: F401  before torch, as the lth command: lth sets the OpenMP wait that torch reads on load
import torch

RESULTS = Path(__file__).resolve().parent / "results"
# The development machines keep real MNIST in ../shared/data/mnist beside the checkout.
DEFAULT_MNIST = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist")


def mnist_dir(arg: str | None) -> str:
    """--data-dir, else $LTH_BENCH_MNIST, else the shared copy."""
    return arg or os.environ.get("LTH_BENCH_MNIST") or DEFAULT_MNIST


def set_threads(n: int | None) -> int:
    if n:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(device: str = "cpu") -> dict:
    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "python": platform.python_version(),
            "load_average_1min": round(os.getloadavg()[0], 2), "device": device}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def command(script: str | None = None, argv: list[str] | None = None) -> str:
    """The command that reproduces a result: this process's own, or (when a script's main(argv) was called
    by run_all.py) the equivalent direct call of `script` with `argv`."""
    if script is not None and argv is not None:
        return " ".join(shlex.quote(a) for a in ["python", f"benchmarks/{script}", *argv])
    return " ".join(shlex.quote(a) for a in ["python", *sys.argv])


def median(xs: list[float]) -> float:
    return statistics.median(xs)


class Timer:
    """Wall time, with a CUDA synchronize at both ends when timing a GPU."""

    def __init__(self, device: str = "cpu"):
        self.cuda = str(device).startswith("cuda")

    def now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()


def write(name: str, record: dict, table_header: list[str], table_rows: list[list], notes: list[str]) -> Path:
    """benchmarks/results/<name>.json and .md; returns the Markdown path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {**record, "written": time.strftime("%Y-%m-%d %H:%M:%S")}
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
    m = record["machine"]
    lines = [f"# {record['title']}", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, {m['threads']} thread(s), "
             f"device {m['device']}{', ' + m['gpu'] if 'gpu' in m else ''}; 1-min load average at start "
             f"{m['load_average_1min']}.", "",
             f"Command: `{record['command']}`", "", f"Written {record['written']}.", "",
             "| " + " | ".join(table_header) + " |", "|" + "---|" * len(table_header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in table_rows]
    lines += [""] + [f"- {n}" for n in notes] + [""]
    path = RESULTS / f"{name}.md"
    path.write_text("\n".join(lines))
    return path
