"""Benchmark: how long the `lth` command takes, as whole processes, for the commands that should feel instant
and for writing a report.

(a) `lth --help`, `lth run --help`, `lth presets`: wall and CPU time of the process, and whether it imported
    torch (it should not: these print text). Target: no torch import.
(b) `lth report RUN` of a 3-level LeNet-300-100 run on MNIST (preset lenet_300_100_mnist, `--lottery.levels 3
    --train.budget 300it`): wall and CPU time of the process, its workers included. Target: < 1.5 s. The run
    is trained once (untimed) in a folder under the temp directory and reused by later calls; `--run DIR`
    uses a run folder of your own instead.

Each command runs as `python -c WRAPPER ARGS` with PYTHONPATH set to this checkout's src/: the wrapper calls
lth.cli.main(ARGS), as the `lth` script does, then reports whether torch is in sys.modules and how long the
import of lth.cli and main() itself took (for the report: main() is what `lth run` pays at its end, where
torch and lth are already imported). Commands run in turn, the order rotated each round; medians over rounds.

    python benchmarks/cli_speed.py [--rounds 5] [--data-dir DIR] [--run RUN_FOLDER]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import command, machine, median, mnist_dir, write  # noqa: E402

SRC = HERE.parent / "src"
REPORT_TARGET_S = 1.5
RUN_ARGS = ["run", "--preset", "lenet_300_100_mnist", "--lottery.levels", "3", "--train.budget", "300it", "--quiet"]

WRAPPER = r"""
import json, sys, time
t0 = time.perf_counter()
import lth.cli
t1 = time.perf_counter()
try:
    rc = lth.cli.main(sys.argv[1:]) or 0
except SystemExit as e:
    rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
t2 = time.perf_counter()
sys.stdout.flush()
print("LTH_BENCH " + json.dumps({"torch": "torch" in sys.modules, "import_s": t1 - t0, "main_s": t2 - t1,
                                 "rc": rc}), file=sys.stderr)
"""


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SRC)}


def shell_line(args: list[str]) -> str:
    """The command a person would type for `args` (what the wrapper runs)."""
    return f"PYTHONPATH={shlex.quote(str(SRC))} python -m lth.cli " + " ".join(shlex.quote(a) for a in args)


def timed(args: list[str]) -> dict:
    """Run the wrapper with `args`: wall seconds, CPU seconds (user + sys, with the workers it waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", WRAPPER, *args], env=env(), capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("LTH_BENCH ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"`{shell_line(args)}` failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    info = json.loads(lines[-1][len("LTH_BENCH "):])
    if info["rc"] != 0:
        raise RuntimeError(f"`{shell_line(args)}` exited with {info['rc']}:\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, **info}


def ensure_run(out: Path, data_dir: str) -> Path:
    """The 3-level LeNet run under `out`, trained now if no finished one is there (not timed)."""
    def finished() -> list[Path]:
        return sorted(p.parents[3] for p in out.glob("*/rep0/level03/ticket/summary.json"))

    if not finished():
        print(f"training the 3-level LeNet run once (not timed) in {out} ...", flush=True)
        args = [*RUN_ARGS, "--data-dir", data_dir, "--out", str(out)]
        proc = subprocess.run([sys.executable, "-m", "lth.cli", *args], env=env(), capture_output=True, text=True)
        if proc.returncode != 0 or not finished():
            raise RuntimeError(f"`{shell_line(args)}` failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return finished()[0]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--data-dir", default=None, help="MNIST IDX files for the run (default: see common.mnist_dir)")
    p.add_argument("--run", default=None, help="an existing run folder to report (default: the 3-level LeNet "
                                               "run, trained once under the temp directory)")
    args = p.parse_args(argv)
    run = Path(args.run) if args.run else ensure_run(Path(tempfile.gettempdir()) / "lth-bench-cli-speed",
                                                     mnist_dir(args.data_dir))
    with tempfile.TemporaryDirectory(prefix="lth-bench-report-") as report_out:
        commands = {"lth --help": ["--help"], "lth run --help": ["run", "--help"], "lth presets": ["presets"],
                    "lth report": ["report", str(run), "--out", report_out]}
        runs: dict[str, list[dict]] = {name: [] for name in commands}
        names = list(commands)
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                runs[name].append(timed(commands[name]))
            print(f"round {r + 1}: " + ", ".join(f"{n} {x[-1]['wall_s']:.2f}s" for n, x in runs.items()),
                  flush=True)

    def med(name: str, key: str) -> float:
        return median([x[key] for x in runs[name]])

    rows, summary = [], {}
    for name in names:
        torch_seen = any(x["torch"] for x in runs[name])
        if name == "lth report":
            target = f"< {REPORT_TARGET_S} s"
            met = med(name, "wall_s") < REPORT_TARGET_S
        else:
            target = "no torch import"
            met = not torch_seen
        summary[name] = {"wall_s": med(name, "wall_s"), "cpu_s": med(name, "cpu_s"),
                         "import_s": med(name, "import_s"), "main_s": med(name, "main_s"),
                         "torch_imported": torch_seen, "target": target, "met": met,
                         "command": shell_line(commands[name])}
        s = summary[name]
        rows.append([f"`{name}`", f"{s['wall_s']:.2f}",
                     f"{min(x['wall_s'] for x in runs[name]):.2f}-{max(x['wall_s'] for x in runs[name]):.2f}",
                     f"{s['cpu_s']:.2f}", f"{s['import_s']:.2f}", f"{s['main_s']:.2f}",
                     "yes" if torch_seen else "no", target, "yes" if met else "no"])
    record = {"title": "The lth command as whole processes: help, presets, and writing a 3-level LeNet report",
              "command": command("cli_speed.py", argv), "machine": machine("cpu"), "args": vars(args),
              "run": str(run), "results": {"runs": runs, "median": summary}}
    notes = [f"Median of {args.rounds} rounds; each command a fresh process (`python -c WRAPPER ARGS`, "
             "PYTHONPATH=src), commands in turn with the order rotated. CPU = user + sys of the process and the "
             "worker processes it waited for.",
             "import lth.cli: the time to import the CLI module (with whatever it imports at the top); main(): "
             "the rest. For `lth report`, main() is what `lth run` spends on its report at the end, where lth "
             "and torch are already imported.",
             f"Report of {run.name}: lenet_300_100_mnist, `--lottery.levels 3 --train.budget 300it` (4 levels, "
             "ticket + reinit + random_prune each), 1 replicate: 9 figures as PNG and SVG, tables, HTML page.",
             "Commands: " + "; ".join(f"`{s['command']}`" for s in summary.values()) + "."]
    path = write("cli_speed", record,
                 ["command", "wall s (median)", "range", "CPU s (median)", "import lth.cli s", "main() s",
                  "torch imported", "target", "target met"], rows, notes)
    print(path.read_text())
    return record


if __name__ == "__main__":
    main()
