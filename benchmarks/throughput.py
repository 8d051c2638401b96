"""Benchmark (a): training steps per second, LeNet-300-100 on real MNIST, CPU (or --device cuda).

Four loops do the same work: N steps of Adam (lr 1.2e-3) on shuffled mini-batches of the same 55K training
split, the training loss and accuracy accumulated, no evaluation inside the timed window, W warmup steps
before it.
  lth        lth.train.train (data resident on the device, fused Adam, metrics on the device; on the CPU the
             MLP's step is written out by hand without autograd, lth.train.chain); timed between save_at hooks at
             steps W and W+N, so its evaluations at step 0 and at the end are outside.
  lth-module the same with --compute.chain false: the module's own forward and autograd (with oneDNN
             products); shows what lth.train.chain buys.
  hand       a hand-written tensor-resident loop: randperm per epoch, index the resident tensors, plain
             torch.optim.Adam (PyTorch's default implementation on this device), the same model.
  hand-fused the same with Adam(fused=True), lth's choice: shows what of lth's margin is the optimizer.
  lth@before lth.train.train at commit --before (default e39281b, the last commit before the one-loop
             redesign; ef90541 is the commit before the speed work), in a subprocess (a git worktree at
             --before-tree), timed the same way as lth; shows what a change did to the trainer's speed.
  dataloader the common way: a Dataset returning (normalize(tensor(img)), label) per item, a
             torch.utils.data.DataLoader with shuffle=True (num_workers=0), plain Adam, loss.item() per step.
Rounds run the loops in turn (rotating the order); the table gives medians over rounds.

    python benchmarks/throughput.py [--data-dir DIR] [--steps 500] [--rounds 5] [--threads N] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import lth  # noqa: F401, E402  before torch, as the lth command: see common.py
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from common import Timer, command, machine, median, mnist_dir, set_threads, write  # noqa: E402

MEAN, STD = 0.1307, 0.3081
LR = 1.2e-3


def lenet(seed: int = 0):
    from lth.config import ModelConfig
    from lth.models import build_model

    return build_model(ModelConfig(name="lenet_300_100"), input_shape=(1, 28, 28), num_classes=10, seed=seed)


def run_lth(data, batch: int, warmup: int, steps: int, device: str, chain: bool = True) -> float:
    from lth.config import ComputeConfig, TrainConfig
    from lth.train import Hooks, train

    timer, marks = Timer(device), {}
    total = warmup + steps
    cfg = TrainConfig(optimizer="adam", lr=LR, batch_size=batch, budget=f"{total}it", eval_every=f"{total}it")
    hooks = Hooks(save_at={warmup: lambda s, m: marks.__setitem__("a", timer.now()),
                           total: lambda s, m: marks.__setitem__("b", timer.now())})
    train(lenet(), data, cfg, hooks=hooks, device=device, progress=False, compute=ComputeConfig(chain=chain))
    return steps / (marks["b"] - marks["a"])


BEFORE_WORKER = r"""
import sys, time, torch
batch, warmup, steps, data_dir, device, threads = sys.argv[1:7]
batch, warmup, steps, threads = int(batch), int(warmup), int(steps), int(threads)
torch.set_num_threads(threads)
from lth.config import ModelConfig, TrainConfig
from lth.data import load_dataset
from lth.models import build_model
from lth.train import Hooks, train
data = load_dataset("mnist", data_dir=data_dir, device=device)
marks = {}
total = warmup + steps
sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
def mark(key):
    sync()
    marks[key] = time.perf_counter()
cfg = TrainConfig(optimizer="adam", lr=1.2e-3, batch_size=batch, budget=f"{total}it", eval_every=f"{total}it")
model = build_model(ModelConfig(name="lenet_300_100"), input_shape=(1, 28, 28), num_classes=10, seed=0)
train(model, data, cfg, hooks=Hooks(save_at={warmup: lambda s, m: mark("a"), total: lambda s, m: mark("b")}),
      device=device, progress=False)
print(steps / (marks["b"] - marks["a"]))
"""


def run_before(tree: str, data_dir: str, batch: int, warmup: int, steps: int, device: str, threads: int) -> float:
    import os
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(Path(tree) / "src"), "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, "-c", BEFORE_WORKER, str(batch), str(warmup), str(steps), data_dir,
                          device, str(threads)], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return float(out.stdout.strip().splitlines()[-1])


def ensure_tree(tree: str, commit: str) -> bool:
    import subprocess

    if (Path(tree) / "src" / "lth").exists():
        return True
    repo = Path(__file__).resolve().parent.parent
    return subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", tree, commit],
                          capture_output=True).returncode == 0


def run_hand(data, batch: int, warmup: int, steps: int, device: str, fused: bool = False) -> float:
    model = lenet().to(device)
    x, y = data.train.x.to(device), data.train.y.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=LR, **({"fused": True} if fused else {}))
    per_epoch = len(x) // batch
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    timer = Timer(device)
    perm = None
    for step in range(warmup + steps):
        if step == warmup:
            t0 = timer.now()
        i = step % per_epoch
        if i == 0:
            perm = torch.randperm(len(x), device=device)
        idx = perm[i * batch:(i + 1) * batch]
        xb, yb = x[idx], y[idx]
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.detach()
        correct += (logits.argmax(1) == yb).sum()
    return steps / (timer.now() - t0)


class MnistItems(torch.utils.data.Dataset):
    """Raw uint8 images, transformed one item at a time, as torchvision-style code does."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        img = torch.tensor(self.images[i], dtype=torch.float32).div_(255).unsqueeze(0)
        return (img - MEAN) / STD, int(self.labels[i])


def raw_train_split(data_dir: str) -> MnistItems:
    """The same 55K training images as lth's split (validation 5K, split seed 0), kept as uint8."""
    from lth.data import read_idx
    from lth.data.mnist import FILES
    from lth.data.splits import train_val_split

    d = Path(data_dir)
    images = torch.from_numpy(read_idx(d / FILES["train_images"]).copy())
    labels = torch.from_numpy(read_idx(d / FILES["train_labels"]).astype(np.int64))
    train, _ = train_val_split(images, labels, 5000, 0)
    return MnistItems(train.x.numpy(), train.y.numpy())


def run_dataloader(items: MnistItems, batch: int, warmup: int, steps: int, device: str) -> float:
    model = lenet().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loader = torch.utils.data.DataLoader(items, batch_size=batch, shuffle=True, drop_last=True)
    timer = Timer(device)
    step, running_loss, running_correct = 0, 0.0, 0
    while step < warmup + steps:
        for xb, yb in loader:
            if step == warmup:
                t0 = timer.now()
            if step == warmup + steps:
                break
            xb, yb = xb.to(device), yb.to(device)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            running_loss += loss.item()
            running_correct += (logits.argmax(1) == yb).sum().item()
            step += 1
    return steps / (timer.now() - t0)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=None, help="MNIST IDX files (default $LTH_BENCH_MNIST or ../shared/data/mnist beside the checkout)")
    p.add_argument("--batch", type=int, nargs="+", default=[60, 128])
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, = cores)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--before", default="e39281b", help="the commit of the lth@before loop")
    p.add_argument("--before-tree", default=None,
                   help="git worktree of that commit (default /tmp/lth-<commit>; made if missing); '' to skip")
    args = p.parse_args(argv)
    threads = set_threads(args.threads)
    from lth.data import load_dataset

    data_dir = mnist_dir(args.data_dir)
    data = load_dataset("mnist", data_dir=data_dir, device=args.device)
    items = raw_train_split(data_dir)
    loops = {"lth": lambda b: run_lth(data, b, args.warmup, args.steps, args.device),
             "lth-module": lambda b: run_lth(data, b, args.warmup, args.steps, args.device, chain=False),
             "hand": lambda b: run_hand(data, b, args.warmup, args.steps, args.device),
             "hand-fused": lambda b: run_hand(data, b, args.warmup, args.steps, args.device, fused=True),
             "dataloader": lambda b: run_dataloader(items, b, args.warmup, args.steps, args.device)}
    tree = f"/tmp/lth-{args.before}" if args.before_tree is None else args.before_tree
    if tree and ensure_tree(tree, args.before):
        loops["lth@before"] = lambda b: run_before(tree, data_dir, b, args.warmup, args.steps, args.device, threads)
    results, rows = {}, []
    for name, loop in loops.items():  # one short untimed run each: first-use costs (allocator, kernel JIT)
        if name != "lth@before":
            loop(args.batch[0])
    for b in args.batch:
        runs: dict[str, list[float]] = {k: [] for k in loops}
        names = list(loops)
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                runs[name].append(loops[name](b))
            print(f"batch {b} round {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in runs.items()), flush=True)
        med = {k: median(v) for k, v in runs.items()}
        # The machine's speed drifts between rounds; the loops of a round run back to back, so each round's
        # own lth/loop ratio is steadier than the ratio of the medians. Both are reported.
        paired = {k: [a / c for a, c in zip(runs["lth"], v)] for k, v in runs.items()}
        results[str(b)] = {"runs_it_per_s": runs, "median_it_per_s": med,
                           "lth_speedup_per_round": paired,
                           "lth_over_hand": med["lth"] / med["hand"],
                           "lth_over_hand_fused": med["lth"] / med["hand-fused"],
                           "lth_over_dataloader": med["lth"] / med["dataloader"],
                           "lth_over_before": med["lth"] / med["lth@before"] if "lth@before" in med else None}
        for k in loops:
            rows.append([b, k, f"{med[k]:.0f}", f"{min(runs[k]):.0f}-{max(runs[k]):.0f}",
                         f"{med['lth'] / med[k]:.2f}x", f"{median(paired[k]):.2f}x",
                         f"{min(paired[k]):.2f}-{max(paired[k]):.2f}"])
    record = {"title": "Training throughput, LeNet-300-100 on MNIST (iterations/s)",
              "command": command("throughput.py", argv),
              "machine": machine(args.device), "args": vars(args) | {"data_dir": data_dir, "threads": threads},
              "results": results}
    notes = [f"{args.steps} timed steps after {args.warmup} warmup steps per run; median of {args.rounds} rounds "
             "(loops interleaved, order rotated each round), after one untimed run of each loop in this process.",
             f"lth@before is commit {args.before}. Targets at batch 60: lth >= 0.9x hand, >= 5x dataloader.",
             "hand = plain torch.optim.Adam (PyTorch's default implementation on this device); hand-fused = "
             "Adam(fused=True), which lth uses.",
             "lth speedup (medians): the ratio of the median rates; (median of rounds): the median of each "
             "round's own ratio, with its range over the rounds."]
    path = write("throughput", record, ["batch", "loop", "it/s (median)", "range", "lth speedup (medians)",
                                        "lth speedup (median of rounds)", "range over rounds"], rows, notes)
    print(path.read_text())
    return record


if __name__ == "__main__":
    main()
