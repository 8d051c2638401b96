"""Benchmark: lth on a shared CPU. The same training alone, two at once and three at once, each in its own
process, and each concurrent training's time against the solo time. The targets (issue 15): at most 2.5× the
solo time with two at once, at most 4× with three.

OpenMP threads that wait for work spin by default (libgomp: 300,000 rounds), on cores another process needs;
lth shortens the spin to GOMP_SPINCOUNT=3000 when it is imported (src/lth/__init__.py). The benchmark also
runs a training alone with the other policies (`solo, passive`: no spin; `solo, active`: spin without end), and
with --policies the concurrent runs with them too.

The training is the dense network of `lth train` with the default preset (MNIST-1D MLP 40-500-500-10, Adam,
batch 100) for --budget iterations (default 600, the issue's example), with torch's default thread count (one
per core) or --threads N. Each worker imports lth, loads the data and builds the network, then waits for a
start signal: the concurrent trainings start together, and only the training is timed.

    python benchmarks/concurrency.py [--rounds 5] [--budget 600it] [--threads N] [--policies]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import command, machine, median, set_threads, write  # noqa: E402

WORKER = r"""
import json, sys, time
budget, threads = sys.argv[1], int(sys.argv[2])
import lth  # first, as the lth command does: it sets the OpenMP wait before torch loads OpenMP
import torch
if threads:
    torch.set_num_threads(threads)
from dataclasses import replace
from lth import presets
from lth.data import load
from lth.models import build_model
from lth.train import train
cfg = presets.get("mnist1d_mlp")
data = load(cfg.data)
model = build_model(cfg.model, input_shape=data.input_shape, num_classes=data.num_classes, seed=0)
print("ready", flush=True)
sys.stdin.readline()
t = time.perf_counter()
train(model, data, replace(cfg.train, budget=budget), progress=False)
print(json.dumps({"seconds": time.perf_counter() - t, "threads": torch.get_num_threads()}), flush=True)
"""

TARGETS = {2: 2.5, 3: 4.0}


# The OpenMP wait settings of a variant; "lth" is none, so lth's own default applies in the worker.
POLICIES = {"lth": {}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"}, "active": {"OMP_WAIT_POLICY": "ACTIVE"}}


def run_together(n: int, policy: str, budget: str, threads: int) -> list[float]:
    """Start n workers, wait until each is ready, start them at once; their training times in seconds."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env |= {**POLICIES[policy], "PYTHONPATH": str(HERE.parent / "src")}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, budget, str(threads)], env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(n)]
    for p in procs:
        if p.stdout.readline().strip() != "ready":
            raise RuntimeError(f"a worker failed:\n{p.stderr.read()[-3000:]}")
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    times = []
    for p in procs:
        line = p.stdout.readline()
        if p.wait() != 0 or not line:
            raise RuntimeError(f"a worker failed:\n{p.stderr.read()[-3000:]}")
        times.append(json.loads(line)["seconds"])
    return times


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--budget", default="600it", help="training length of each worker (default 600it)")
    p.add_argument("--threads", type=int, default=0, help="torch threads per worker (0: torch's default)")
    p.add_argument("--policies", action="store_true",
                   help="also run two and three at once with OMP_WAIT_POLICY=PASSIVE and ACTIVE (spinning; slow)")
    args = p.parse_args(argv)
    set_threads(args.threads or None)
    variants = [("solo", 1, "lth"), ("solo, passive", 1, "passive"), ("solo, active", 1, "active"),
                ("two at once", 2, "lth"), ("three at once", 3, "lth")]
    if args.policies:
        variants += [(f"{many} at once, {policy}", n, policy) for policy in ("passive", "active")
                     for many, n in (("two", 2), ("three", 3))]
    runs: dict[str, list[list[float]]] = {name: [] for name, _, _ in variants}
    for r in range(args.rounds):
        order = variants[r % len(variants):] + variants[:r % len(variants)]
        for name, n, policy in order:
            runs[name].append(run_together(n, policy, args.budget, args.threads))
        print(f"round {r + 1}: " + ", ".join(f"{name} {max(runs[name][-1]):.1f}s" for name, _, _ in variants),
              flush=True)
    solo = median([t for ts in runs["solo"] for t in ts])
    # The machine's speed drifts; a round's variants run back to back, so each round's own ratio is steadier.
    paired = {name: [max(ts) / s[0] for ts, s in zip(runs[name], runs["solo"])] for name, _, _ in variants}
    rows, summary = [], {}
    for name, n, policy in variants:
        every = [t for ts in runs[name] for t in ts]
        ratio = median(every) / solo
        target = TARGETS.get(n) if policy == "lth" else None
        summary[name] = {"processes": n, "policy": policy, "median_s": median(every), "vs_solo": ratio,
                         "paired_slowest_vs_solo": paired[name], "target": target}
        rows.append([name, n, policy, f"{median(every):.2f}", f"{min(every):.2f}-{max(every):.2f}",
                     f"{ratio:.2f}x", f"{median(paired[name]):.2f}x",
                     f"<= {target}x: {'met' if median(paired[name]) <= target else 'not met'}" if target else "-"])
    record = {"title": "Trainings sharing the CPU: alone, two at once, three at once",
              "command": command("concurrency.py", argv), "machine": machine("cpu"), "args": vars(args),
              "results": {"runs": runs, "summary": summary,
                          "solo_vs_passive": median([t for ts in runs["solo, passive"] for t in ts])
                          / median([t for ts in runs["solo"] for t in ts]),
                          "solo_vs_active": median([t for ts in runs["solo, active"] for t in ts])
                          / median([t for ts in runs["solo"] for t in ts])}}
    notes = [f"Each worker: `lth train`'s dense network of the default preset for {args.budget}, "
             f"{args.threads or 'torch default'} thread(s); {args.rounds} rounds, variants rotated; only the "
             "training is timed (the workers of one variant start together).",
             "x solo (medians): the median training time of the variant over the median solo time. Slowest vs "
             "solo: per round, the slowest concurrent training over that round's solo time; the median over "
             "rounds is what the target is checked against.",
             "OpenMP wait: lth = lth's default (GOMP_SPINCOUNT=3000, a short spin); passive = no spin; active = "
             "spin without end.",
             f"A training alone: passive takes {record['results']['solo_vs_passive']:.2f}x and active "
             f"{record['results']['solo_vs_active']:.2f}x the time of lth's default.",
             "Run it on a quiet machine: the solo time is the yardstick."]
    path = write("concurrency_cpu", record,
                 ["variant", "processes", "OpenMP wait", "s per training (median)", "range", "x solo (medians)",
                  "slowest vs solo (median of rounds)", "target"], rows, notes)
    print(path.read_text())
    return record


if __name__ == "__main__":
    main()
