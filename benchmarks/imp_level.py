"""Benchmark (c): wall time of one whole IMP level of the default experiment, before a change vs now.

The default experiment is `lth run` with its defaults: preset mnist1d_mlp (MNIST-1D, MLP 40-500-500-10,
Adam 2e-2, batch 100, 1500 iterations, evaluation every 50), controls reinit and random_prune. Level 0 (the
dense network) is trained first, untimed; then level 1 (ticket + reinit + random_prune, with its mask
computed from level 0) is timed: building its jobs and training them, i.e. what `lth run` spends on it.

Variants, each in its own process, run in turn for --rounds rounds (order rotated):
  before      the package at commit --before (default e39281b, the last commit before the one-loop redesign;
              ef90541 is the commit before the speed work), a git worktree at --before-tree, made if missing
  sequential  the current package with --compute.batch 0 (one network at a time)
  current     the current package as `lth run` runs it (on the CPU: one network at a time, see
              lth.config.ComputeConfig.batch_limit)
  batched     the current package with --compute.batch 16: the level's three networks in one batched pass

    python benchmarks/imp_level.py [--rounds 8] [--threads N] [--before e39281b] [--before-tree DIR]
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

BEFORE_COMMIT = "e39281b"

# Trees before the one-loop redesign drive IMP through lth.lottery's IMP and DatasetBackend (batching set by
# LTH_BATCH); later ones through lth.experiments.imp.Imp and an executor (batching set by --compute.batch).
WORKER = r"""
import json, os, sys, time, torch
threads, out, device, batch = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
if threads:
    torch.set_num_threads(threads)
from dataclasses import replace
from lth import presets
from lth.data import load
from lth.store import RunStore
from lth.train import resolve_device
cfg = replace(presets.get("mnist1d_mlp"), out_dir=out, device=device)
dev = resolve_device(cfg.device)
data = load(cfg.data, device=dev)
try:
    from lth.experiments.imp import Imp, ModelBuilder, rewind_step
except ImportError:
    Imp = None
if Imp is None:
    from lth.lottery import DatasetBackend, IMP
    if batch != "auto":
        os.environ["LTH_BATCH"] = batch
    store = RunStore.for_config(cfg)
    with store:
        imp = IMP(cfg, DatasetBackend(cfg, data, dev, False), store, log=lambda *a: None)
        def level(n):
            jobs = imp.jobs(n)
            imp.backend.train(jobs, store)
            return sorted(j.unit.branch for j in jobs)
        t = time.perf_counter(); level(0); level0 = time.perf_counter() - t
        t = time.perf_counter(); branches = level(1); level1 = time.perf_counter() - t
else:
    from lth.config import ComputeConfig
    from lth.executors import LocalExecutor
    cfg = replace(cfg, compute=ComputeConfig(batch=batch))
    store = RunStore.for_config(cfg)
    with store:
        ex = LocalExecutor(device=dev, compute=cfg.compute, progress=False, datasets={cfg.data: data})
        imp = Imp(cfg, store, ModelBuilder.for_data(cfg.model, data), rewind_step(cfg, data),
                  data=data)
        levels = imp.submit(ex)
        t = time.perf_counter(); ex.gather(levels[0]); level0 = time.perf_counter() - t
        t = time.perf_counter(); branches = sorted(s.branch for s in ex.gather(levels[1]))
        level1 = time.perf_counter() - t
print(json.dumps({"level0_s": level0, "level1_s": level1, "branches": branches,
                  "threads": torch.get_num_threads()}))
"""


def ensure_before(tree: Path, commit: str) -> Path:
    """A git worktree of `commit` at `tree` (made if missing; an existing one must be at that commit)."""
    repo = HERE.parent
    if not (tree / "src" / "lth").exists():
        subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", str(tree), commit], check=True)
    head = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    want = subprocess.run(["git", "-C", str(repo), "rev-parse", commit], capture_output=True, text=True).stdout
    if head.strip() != want.strip():
        raise SystemExit(f"{tree} is not at {commit}; remove it (git worktree remove {tree}) or pass --before-tree")
    return tree / "src"


BATCH = {"sequential": "0", "batched": "16"}


def run_variant(name: str, src: Path, threads: int, device: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src)}
    env.pop("LTH_BATCH", None)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    with tempfile.TemporaryDirectory(prefix=f"lth-bench-{name}-") as out:
        proc = subprocess.run([sys.executable, "-c", WORKER, str(threads), out, device, BATCH.get(name, "auto")],
                              env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--threads", type=int, default=0, help="torch threads in the workers (0: torch's default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--before", default=BEFORE_COMMIT, help="the commit to compare with")
    p.add_argument("--before-tree", default=None, help="git worktree of that commit (default /tmp/lth-<commit>)")
    p.add_argument("--variants", nargs="+", default=None,
                   help="default: before current, and batched on the CPU (where current is one at a time) "
                        "or sequential on CUDA (where current is batched)")
    args = p.parse_args(argv)
    if args.variants is None:
        args.variants = ["before", "current", "batched" if args.device == "cpu" else "sequential"]
    set_threads(args.threads or None)
    tree = Path(args.before_tree or f"/tmp/lth-{args.before}")
    here = HERE.parent / "src"
    srcs = {"before": ensure_before(tree, args.before) if "before" in args.variants else None,
            "sequential": here, "current": here, "batched": here}
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
    notes = [f"Median of {args.rounds} rounds; each variant in a fresh process; `before` is commit {args.before}. "
             "Speedup (medians): the ratio of the median times; speedup (median of rounds): the median of each "
             "round's own ratio (variants of a round run back to back).",
             "Level 1 wall time includes building its jobs (pruning, controls) and training its 3 networks "
             "(1500 iterations each, with evaluations).",
             "Each tree runs its own preset (the pruning rate of mnist1d_mlp changed after ef90541, 20% -> 30% "
             "per level), which changes the level-1 mask but not the work (the products are dense)."]
    path = write(f"imp_level_{args.device.split(':')[0]}", record,
                 ["variant", "level 1 s (median)", "range", "speedup (medians)", "speedup (median of rounds)",
                  "speedup range over rounds", "level 0 s"], rows, notes)
    print(path.read_text())
    return record


if __name__ == "__main__":
    main()
