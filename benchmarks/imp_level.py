"""Benchmark (c): wall time of one whole IMP level of the default experiment, before this work vs now.

The default experiment is `lth run` with its defaults: preset mnist1d_mlp (MNIST-1D, MLP 40-500-500-10,
Adam 2e-2, batch 100, 1500 iterations, evaluation every 50), controls reinit and random_prune. Level 0 (the
dense network) is trained first, untimed; then level 1 (ticket + reinit + random_prune, with its mask
computed from level 0) is timed: building its jobs and training them, i.e. what `lth run` spends on it.

Variants, each in its own process, run in turn for --rounds rounds (order rotated):
  before      the package at commit ef90541 (a git worktree at --before-tree, made if missing)
  sequential  the current package with LTH_BATCH=0 (one network at a time)
  current     the current package as `lth run` runs it (on the CPU: one network at a time, see
              lth.train.batched.batch_limit)
  batched     the current package with LTH_BATCH=16: the level's three networks in one batched pass

    python benchmarks/imp_level.py [--rounds 3] [--threads N] [--before-tree /tmp/lth-before]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import command, machine, median, set_threads, write  # noqa: E402

BEFORE_COMMIT = "ef90541"

WORKER = r"""
import json, sys, time, torch
threads, out, device = int(sys.argv[1]), sys.argv[2], sys.argv[3]
if threads:
    torch.set_num_threads(threads)
from dataclasses import replace
from lth import presets
from lth.data import load
from lth.lottery import DatasetBackend, IMP
from lth.store import RunStore
from lth.train import resolve_device
cfg = replace(presets.get("mnist1d_mlp"), out_dir=out, device=device)
dev = resolve_device(cfg.device)
data = load(cfg.data, device=dev)
store = RunStore.for_config(cfg)
with store:
    imp = IMP(cfg, DatasetBackend(cfg, data, dev, False), store, log=lambda *a: None)
    t = time.perf_counter()
    jobs = imp.jobs(0)
    imp.backend.train(jobs, store)
    level0 = time.perf_counter() - t
    t = time.perf_counter()
    jobs = imp.jobs(1)
    imp.backend.train(jobs, store)
    level1 = time.perf_counter() - t
    branches = sorted(j.unit.branch for j in jobs)
print(json.dumps({"level0_s": level0, "level1_s": level1, "branches": branches,
                  "threads": torch.get_num_threads()}))
"""


def ensure_before(tree: Path) -> Path:
    repo = HERE.parent
    if not (tree / "src" / "lth").exists():
        subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", str(tree), BEFORE_COMMIT], check=True)
    return tree / "src"


def run_variant(name: str, src: Path, threads: int, device: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src)}
    env.pop("LTH_BATCH", None)
    if name == "sequential":
        env["LTH_BATCH"] = "0"
    if name == "batched":
        env["LTH_BATCH"] = "16"
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    with tempfile.TemporaryDirectory(prefix=f"lth-bench-{name}-") as out:
        proc = subprocess.run([sys.executable, "-c", WORKER, str(threads), out, device], env=env,
                              capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--threads", type=int, default=0, help="torch threads in the workers (0: torch's default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--before-tree", default="/tmp/lth-before", help=f"git worktree of commit {BEFORE_COMMIT}")
    p.add_argument("--variants", nargs="+", default=None,
                   help="default: before current, and batched on the CPU (where current is one at a time) "
                        "or sequential on CUDA (where current is batched)")
    args = p.parse_args(argv)
    if args.variants is None:
        args.variants = ["before", "current", "batched" if args.device == "cpu" else "sequential"]
    set_threads(args.threads or None)
    srcs = {"before": ensure_before(Path(args.before_tree)), "sequential": HERE.parent / "src",
            "current": HERE.parent / "src", "batched": HERE.parent / "src"}
    runs: dict[str, list[dict]] = {v: [] for v in args.variants}
    for r in range(args.rounds):
        order = args.variants[r % len(args.variants):] + args.variants[:r % len(args.variants)]
        for v in order:
            runs[v].append(run_variant(v, srcs[v], args.threads, args.device))
        print(f"round {r + 1}: " + ", ".join(f"{v} level1 {x[-1]['level1_s']:.1f}s" for v, x in runs.items()),
              flush=True)
    med = {v: {"level0_s": median([x["level0_s"] for x in xs]), "level1_s": median([x["level1_s"] for x in xs])}
           for v, xs in runs.items()}
    ref_name = "before" if "before" in runs else next(iter(runs))
    ref = med[ref_name]["level1_s"]
    # The machine's speed drifts over a run; a round's variants run back to back, so the ratio within each
    # round is steadier than the ratio of the medians. Both are reported.
    paired = {v: [b["level1_s"] / x["level1_s"] for b, x in zip(runs[ref_name], xs)] for v, xs in runs.items()}
    rows = [[v, f"{med[v]['level1_s']:.1f}",
             f"{min(x['level1_s'] for x in runs[v]):.1f}-{max(x['level1_s'] for x in runs[v]):.1f}",
             f"{ref / med[v]['level1_s']:.2f}x", f"{median(paired[v]):.2f}x",
             f"{min(paired[v]):.2f}-{max(paired[v]):.2f}", f"{med[v]['level0_s']:.1f}"] for v in runs]
    record = {"title": "One IMP level of the default experiment (mnist1d_mlp, level 1: ticket + reinit + random_prune)",
              "command": command("imp_level.py", argv), "machine": machine(args.device), "args": vars(args),
              "results": {"runs": runs, "median": med,
                          "speedup_vs_before": {v: ref / med[v]["level1_s"] for v in med},
                          "paired_speedups": paired}}
    notes = [f"Median of {args.rounds} rounds; each variant in a fresh process; `before` is commit {BEFORE_COMMIT}. "
             "Speedup (medians): the ratio of the median times; speedup (median of rounds): the median of each "
             "round's own ratio (variants of a round run back to back).",
             "Level 1 wall time includes building its jobs (pruning, controls) and training its 3 networks "
             "(1500 iterations each, with evaluations). Target: current >= 2x faster than before.",
             "Each tree runs its own preset: the pruning rate of mnist1d_mlp changed after ef90541 (20% -> 30% "
             "per level), which changes the level-1 mask but not the work (the products are dense)."]
    path = write(f"imp_level_{args.device.split(':')[0]}", record,
                 ["variant", "level 1 s (median)", "range", "speedup (medians)", "speedup (median of rounds)",
                  "speedup range over rounds", "level 0 s"], rows, notes)
    print(path.read_text())
    return record


if __name__ == "__main__":
    main()
