"""Run every benchmark with its defaults and collect the tables in benchmarks/results/summary.md.

    python benchmarks/run_all.py [--device cpu|cuda] [--threads N] [--data-dir DIR]

Each benchmark also writes its own results/<name>.json and .md (machine, command, every run).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import batched  # noqa: E402
import concurrency  # noqa: E402
import imp_level  # noqa: E402
import kernels  # noqa: E402
import throughput  # noqa: E402
from common import RESULTS, command  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--data-dir", default=None)
    args = p.parse_args()
    common = ["--device", args.device] + (["--threads", str(args.threads)] if args.threads else [])
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    dev = args.device.split(":")[0]
    started = time.time()
    throughput.main(common + data)
    batched.main(common + data)
    imp_level.main(common)  # MNIST-1D: no data directory
    if dev == "cpu":
        kernels.main(["--threads", str(args.threads)] if args.threads else [])
        concurrency.main(["--threads", str(args.threads)] if args.threads else [])
    parts = [f"# lth benchmarks\n\nAll of them: `{command()}` ({time.time() - started:.0f} s).\n"]
    for name in ("throughput", f"batched_{dev}", f"imp_level_{dev}", *(("kernels_cpu", "concurrency_cpu")
                                                                       if dev == "cpu" else ())):
        path = RESULTS / f"{name}.md"
        if path.exists():
            parts.append(path.read_text().replace("\n# ", "\n## ").replace("# ", "## ", 1))
    (RESULTS / "summary.md").write_text("\n".join(parts))
    print(f"wrote {RESULTS / 'summary.md'}")


if __name__ == "__main__":
    main()
