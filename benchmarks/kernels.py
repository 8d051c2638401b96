"""Matrix-product speed: PyTorch's default CPU kernel (F.linear) vs oneDNN (lth.train.kernels), and how much
of a LeNet-300-100 training step the products take.

    python benchmarks/kernels.py [--threads N] [--rounds R]

Writes results/kernels_cpu.json and .md. These are the figures that lth.train.kernels' docstring cites.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import lth  # noqa: F401, E402  before torch, as the lth command: see common.py
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Timer, command, machine, median, set_threads, write  # noqa: E402

from lth.train.chain import _product  # noqa: E402
from lth.train.kernels import _mm, onednn_available  # noqa: E402
from lth.train.optim import fast_step  # noqa: E402

# (batch, in, out): LeNet-300-100's first layer at batch 60 and 128, and the MNIST-1D MLP's middle layer.
SHAPES = [(60, 784, 300), (128, 784, 300), (100, 500, 500)]


def gflops(fn, flops: float, reps: int, rounds: int) -> float:
    timer = Timer("cpu")
    for _ in range(reps // 4):
        fn()
    times = []
    for _ in range(rounds):
        t = timer.now()
        for _ in range(reps):
            fn()
        times.append((timer.now() - t) / reps)
    return flops / median(times) / 1e9


def step_split(rounds: int) -> dict[str, float]:
    """ms per LeNet-300-100 step at batch 60 with Adam (F.linear), and the parts a step cannot do without:
    its 8 matrix products with F.linear, the same products as lth computes them (lth.train.chain: oneDNN
    for the large ones), and the fused Adam update alone."""
    g = torch.Generator().manual_seed(0)
    sizes = [(784, 300), (300, 100), (100, 10)]
    ws = [torch.randn(o, i, generator=g).mul_(0.05).requires_grad_() for i, o in sizes]
    x, y = torch.randn(60, 784, generator=g), torch.randint(0, 10, (60,), generator=g)
    opt = torch.optim.Adam(ws, lr=1e-3, fused=True)

    def step():
        h = x
        for i, w in enumerate(ws):
            h = F.linear(h, w)
            h = h.relu() if i < 2 else h
        loss = F.cross_entropy(h, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    acts = [torch.randn(60, i, generator=g) for i, _ in sizes]
    outs = [torch.randn(60, o, generator=g) for _, o in sizes]
    wd = [w.detach() for w in ws]

    def products():  # 3 forward, 3 weight-gradient and 2 input-gradient products (none for the input layer)
        for a, go, w in zip(acts, outs, wd):
            F.linear(a, w)
            go.t() @ a
        outs[1] @ wd[1]
        outs[2] @ wd[2]

    onednn = onednn_available()

    def lth_products():  # the same 8 products through lth.train.chain's kernel choice
        for a, go, w in zip(acts, outs, wd):
            _product(a, w, onednn=onednn)
            _product(go.t(), a.t(), onednn=onednn)
        _product(outs[1], wd[1].t(), onednn=onednn)
        _product(outs[2], wd[2].t(), onednn=onednn)

    for w in ws:
        w.grad = torch.randn_like(w)
    opt_step = fast_step(opt)
    parts = {"step_ms": step, "products_ms": products, "lth_products_ms": lth_products, "adam_ms": opt_step}
    timer, times = Timer("cpu"), {k: [] for k in parts}
    for _ in range(50):
        step()
    for _ in range(rounds):
        for key, fn in parts.items():
            t = timer.now()
            for _ in range(200):
                fn()
            times[key].append((timer.now() - t) / 200 * 1e3)
    return {key: median(v) for key, v in times.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    set_threads(args.threads)
    rows, runs = [], []
    have = onednn_available()
    for b, i, o in SHAPES:
        g = torch.Generator().manual_seed(0)
        x, w = torch.randn(b, i, generator=g), torch.randn(o, i, generator=g)
        flops = 2 * b * i * o
        default = gflops(lambda: F.linear(x, w), flops, 300, args.rounds)
        onednn = gflops(lambda: _mm(x, w), flops, 300, args.rounds) if have else float("nan")
        runs.append({"shape": [b, i, o], "default_gflops": default, "onednn_gflops": onednn})
        rows.append([f"[{b}, {i}] x [{i}, {o}]", f"{default:.0f}", f"{onednn:.0f}", f"{onednn / default:.2f}x"])
    split = step_split(args.rounds)
    runs.append({f"lenet_{k}": v for k, v in split.items()})
    full, mm = split["step_ms"], split["products_ms"]
    floor = split["lth_products_ms"] + split["adam_ms"]
    notes = [f"LeNet-300-100 training step at batch 60 (fused Adam, F.linear): {full:.2f} ms, of which its 8 "
             f"matrix products alone take {mm:.2f} ms ({100 * mm / full:.0f}%).",
             f"The same 8 products as lth computes them (oneDNN for the large ones) take "
             f"{split['lth_products_ms']:.2f} ms and the fused Adam update alone {split['adam_ms']:.2f} ms: no "
             f"LeNet step on this machine can take less than their sum, {floor:.2f} ms ({1e3 / floor:.0f} it/s).",
             "GFLOP/s: 2·b·in·out per product over the median time of 300 calls; median of the rounds.",
             "oneDNN here is torch.ops.mkldnn._linear_pointwise, which lth.train.kernels uses for nn.Linear."]
    record = {"title": "Matrix products on the CPU: default (F.linear) vs oneDNN", "machine": machine("cpu"),
              "command": command("kernels.py", argv if argv is not None else sys.argv[1:]), "runs": runs}
    path = write("kernels_cpu", record, ["product", "default GFLOP/s", "oneDNN GFLOP/s", "oneDNN speedup"],
                 rows, notes)
    print(path.read_text())


if __name__ == "__main__":
    main()
