"""Inference with a ticket: the dense network (pruned weights stored as zeros) vs lth's sparse export (CSR
weights, lth.export.SparseModel), on the CPU.

Networks: LeNet-300-100 (784-300-100-10), the MNIST-1D MLP (40-500-500-10) and a wide MLP
(4096-4096-4096-10), each at P_m 20, 10, 5 and 2% (every layer kept at that density, a random mask), at
batch 1 and batch 256. `dense` is the model's own forward (nn.Linear: F.linear); `sparse` is the same
weights after SparseModel.from_dense (one CSR × dense product per layer, torch.addmm). Both run under
no_grad. Before timing, their logits are compared (the largest difference is reported).

Each round times every configuration, dense and sparse back to back (order alternating between rounds), so
the rounds of one configuration are spread over the whole run; the table gives medians and the median of
the rounds' own dense/sparse ratios.

    python benchmarks/inference.py [--rounds 7] [--threads N] [--quick]

Writes results/inference_cpu.json and .md (--quick: results/inference_cpu_quick.*, a smoke test with short
timings that are not measurements).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import lth  # noqa: F401, E402  before torch, as the lth command: see common.py
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Timer, command, machine, median, set_threads, write  # noqa: E402

from lth.export import SparseModel  # noqa: E402
from lth.models.mlp import MLP  # noqa: E402
from lth.prune import Mask  # noqa: E402

NETWORKS = {"lenet_300_100": (784, (300, 100), 10), "mnist1d_mlp": (40, (500, 500), 10),
            "mlp_4096": (4096, (4096, 4096), 10)}
PM = (20.0, 10.0, 5.0, 2.0)
BATCHES = (1, 256)


def random_mask(model: MLP, pm: float, g: torch.Generator) -> Mask:
    """Every layer keeps round(pm% of its weights), chosen uniformly at random."""
    out = {}
    for name in model.prunable_names:
        w = model.get_parameter(name)
        keep = torch.zeros(w.numel(), dtype=torch.bool)
        keep[torch.randperm(w.numel(), generator=g)[:max(1, round(pm / 100 * w.numel()))]] = True
        out[name] = keep.view_as(w)
    return Mask(out)


def weight_bytes(model: MLP, mask: Mask) -> tuple[int, int]:
    """Bytes of the prunable weights: dense float32, and CSR (float32 values, int32 indices)."""
    dense = sum(4 * t.numel() for t in mask.values())
    sparse = sum(8 * int(t.sum()) + 4 * (t.shape[0] + 1) for t in mask.values())
    return dense, sparse


def per_call(fn, reps: int, timer: Timer) -> float:
    """Seconds per call over `reps` calls."""
    t = timer.now()
    for _ in range(reps):
        fn()
    return (timer.now() - t) / reps


def setup(device: str, target: float) -> list[dict]:
    """Every configuration: its two callables (checked against each other) and how many calls make a timing."""
    g = torch.Generator().manual_seed(0)
    timer, configs = Timer(device), []
    for net, (inp, hidden, classes) in NETWORKS.items():
        torch.manual_seed(0)
        base = MLP(inp, hidden, classes)
        for pm in PM:
            model = MLP(inp, hidden, classes)
            model.load_state_dict(base.state_dict())
            mask = random_mask(model, pm, g)
            mask.apply_(model)
            sparse = SparseModel.from_dense(model, mask).to(device)
            model = model.eval().to(device)
            dense_bytes, sparse_bytes = weight_bytes(model, mask)
            for batch in BATCHES:
                x = torch.randn(batch, inp, generator=g).to(device)

                def dense_call(m=model, x=x):
                    with torch.no_grad():
                        return m(x)

                fns = {"dense": dense_call, "sparse": lambda m=sparse, x=x: m(x)}
                want, got = fns["dense"](), fns["sparse"]()
                diff = float((want - got).abs().max() / want.abs().max())
                reps = {k: max(1, math.ceil(target / per_call(fn, 1, timer))) for k, fn in fns.items()}
                configs.append({"network": net, "pm": pm, "batch": batch, "fns": fns, "reps": reps,
                                "max_rel_diff": diff, "dense_bytes": dense_bytes, "sparse_bytes": sparse_bytes,
                                "times": {"dense": [], "sparse": []}})
    return configs


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda: SparseModel runs on either")
    p.add_argument("--target-seconds", type=float, default=0.2, help="length of one timing (calls are repeated)")
    p.add_argument("--quick", action="store_true", help="smoke test: 10 ms timings, written under another name")
    args = p.parse_args(argv)
    set_threads(args.threads)
    target = 0.01 if args.quick else args.target_seconds
    configs = setup(args.device, target)
    timer = Timer(args.device)
    for r in range(args.rounds):
        order = ("dense", "sparse") if r % 2 == 0 else ("sparse", "dense")
        for c in configs:
            for v in order:
                c["fns"][v]()  # one untimed call: caches warm for this variant
                c["times"][v].append(per_call(c["fns"][v], c["reps"][v], timer))
        print(f"round {r + 1} of {args.rounds} done", flush=True)
    rows, runs, slower = [], [], []
    for c in configs:
        dense, sparse = median(c["times"]["dense"]), median(c["times"]["sparse"])
        paired = [d / s for d, s in zip(c["times"]["dense"], c["times"]["sparse"])]
        label = f"{c['network']}, P_m {c['pm']:g}%, batch {c['batch']}"
        if median(paired) < 1:
            slower.append(f"{label} ({median(paired):.2f}x)")
        rows.append([c["network"], f"{c['pm']:g}", c["batch"], f"{1e3 * dense:.4f}", f"{1e3 * sparse:.4f}",
                     f"{dense / sparse:.2f}x", f"{median(paired):.2f}x", f"{min(paired):.2f}-{max(paired):.2f}",
                     f"{c['sparse_bytes'] / c['dense_bytes']:.3f}", f"{c['max_rel_diff']:.1e}"])
        runs.append({k: c[k] for k in ("network", "pm", "batch", "reps", "max_rel_diff", "dense_bytes",
                                        "sparse_bytes", "times")} | {"paired_speedups": paired})
    notes = [f"ms per forward pass: median of {args.rounds} rounds; each timing repeats the call for about "
             f"{target:g} s. Speedup (medians): dense median / sparse median; speedup (median of rounds): the "
             "median of each round's own dense/sparse ratio. Above 1x the sparse model is faster.",
             "Sparse is slower at: " + ("; ".join(slower) if slower else "none of these configurations") + ".",
             "Masks are random with the same density in every layer (IMP's tickets keep the output layer denser); "
             "the cost of a CSR product depends on the number of kept weights, not on which ones.",
             "bytes sparse/dense: the prunable weights in CSR (float32 values, int32 indices) over dense float32.",
             "max rel diff: the largest |dense - sparse| logit over the largest |dense| logit (float rounding: "
             "the sparse products add in another order)."]
    if args.quick:
        notes.insert(0, "QUICK RUN (--quick): a smoke test of the script; these timings are not measurements.")
    dev = args.device.split(":")[0]
    record = {"title": "Inference: dense ticket vs sparse export (CSR, lth.export.SparseModel)",
              "machine": machine(args.device), "command": command("inference.py", argv if argv is not None
                                                                  else sys.argv[1:]),
              "args": vars(args), "runs": runs}
    path = write(f"inference_{dev}{'_quick' if args.quick else ''}", record,
                 ["network", "P_m %", "batch", "dense ms", "sparse ms", "speedup (medians)",
                  "speedup (median of rounds)", "range over rounds", "bytes sparse/dense", "max rel diff"],
                 rows, notes)
    print(path.read_text())
    return record


if __name__ == "__main__":
    main()
