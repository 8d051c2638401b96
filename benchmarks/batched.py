"""Benchmark (b): K LeNet-300-100s on MNIST trained in one batched pass vs one after another.

Both sides do the same work: K networks (own initialization, own data order), N training steps each after W
warmup steps, Adam 1.2e-3, batch 60. `sequential` is lth.train.train once per network (timed between save_at
hooks at steps W and W+N, summed over the K networks); `batched` is lth.train.train_batched (a VmapStepper) over all K
(timed the same way). Evaluations (step 0 and the end) fall outside the timed windows. Throughput is network
steps per second (K x N / time); the table gives medians over rounds.

    python benchmarks/batched.py [--data-dir DIR] [--k 8] [--steps 300] [--rounds 3] [--threads N] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Timer, command, machine, median, mnist_dir, set_threads, write  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--batch", type=int, default=60)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    threads = set_threads(args.threads)

    from lth.config import ModelConfig, TrainConfig
    from lth.data import load_dataset
    from lth.models import build_model
    from lth.train import Hooks, Member, train, train_batched

    data_dir = mnist_dir(args.data_dir)
    data = load_dataset("mnist", data_dir=data_dir, device=args.device)
    total = args.warmup + args.steps
    base = TrainConfig(optimizer="adam", lr=1.2e-3, batch_size=args.batch, budget=f"{total}it",
                       eval_every=f"{total}it")
    cfgs = [TrainConfig(**{**base.__dict__, "data_seed": k}) for k in range(args.k)]
    timer = Timer(args.device)

    def models():
        return [build_model(ModelConfig(name="lenet_300_100"), input_shape=data.input_shape, num_classes=10, seed=k)
                for k in range(args.k)]

    def window(marks: dict, key: str = "") -> Hooks:
        return Hooks(save_at={args.warmup: lambda s, m: marks.__setitem__(key + "a", timer.now()),
                              total: lambda s, m: marks.__setitem__(key + "b", timer.now())})

    def sequential() -> float:
        seconds = 0.0
        for m, c in zip(models(), cfgs):
            marks: dict = {}
            train(m, data, c, hooks=window(marks), device=args.device, progress=False)
            seconds += marks["b"] - marks["a"]
        return args.k * args.steps / seconds

    def batched() -> float:
        marks: dict = {}
        members = [Member(m, c, hooks=window(marks) if i == 0 else None) for i, (m, c) in enumerate(zip(models(), cfgs))]
        train_batched(members, data, device=args.device, progress=False)
        return args.k * args.steps / (marks["b"] - marks["a"])

    runs = {"sequential": [], "batched": []}
    batched()  # untimed: first-use costs (allocator, kernel JIT, vmap tracing)
    for r in range(args.rounds):
        order = ["sequential", "batched"] if r % 2 == 0 else ["batched", "sequential"]
        for name in order:
            runs[name].append(sequential() if name == "sequential" else batched())
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f} net-it/s" for k, v in runs.items()), flush=True)
    med = {k: median(v) for k, v in runs.items()}
    speedup = med["batched"] / med["sequential"]
    record = {"title": f"K = {args.k} LeNet-300-100s in one pass vs in sequence (network iterations/s)",
              "command": command("batched.py", argv), "machine": machine(args.device),
              "args": vars(args) | {"data_dir": data_dir, "threads": threads},
              "results": {"runs_net_it_per_s": runs, "median_net_it_per_s": med, "speedup": speedup}}
    rows = [[k, f"{med[k]:.0f}", f"{min(runs[k]):.0f}-{max(runs[k]):.0f}", f"{med[k] / med['sequential']:.2f}x"]
            for k in runs]
    notes = [f"K={args.k}, batch {args.batch}, {args.steps} timed steps after {args.warmup} warmup per network; "
             f"median of {args.rounds} rounds.", "Targets: >= 2x on CPU, >= 6x on GPU."]
    path = write(f"batched_{args.device.split(':')[0]}", record,
                 ["mode", "network it/s (median)", "range", "vs sequential"], rows, notes)
    print(path.read_text())
    return record


if __name__ == "__main__":
    main()
