"""Run folders: a readable name plus the config hash, one folder per training, and resume.

Layout of a run folder::

    <name>-<hash>/
      config.json              the resolved config (and its hash)
      .lock                    held by the process working on the run
      rep0/init.safetensors    θ_0 of replicate 0
      rep0/rewind.safetensors  θ_k when rewinding to k > 0
      rep0/level03/mask.safetensors (+ .json)      the level's mask
      rep0/level03/ticket/     metrics.csv, summary.json, final.safetensors, resume.pt while training
      rep0/level03/reinit/     ... one folder per control
      rep0/level03/random_prune/

A training is finished exactly when its summary.json exists: it is written last, atomically, so a kill at
any moment leaves either a finished training or one that resumes from resume.pt.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lth.config import ExperimentConfig, config_hash, to_dict


class RunLockedError(RuntimeError):
    pass


PLAN_FILE = "plan.json"
"""P_m of the levels the latest request runs (level 0 first), written by the IMP driver when it starts."""


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def run_name(cfg: ExperimentConfig, kind: str = "imp") -> str:
    """`<preset or model_dataset>-<mode>-<hash>`, e.g. `mnist1d_mlp-imp-1a2b3c4d`."""
    base = cfg.preset or f"{cfg.model.name}_{cfg.data.dataset}"
    mode = kind
    if kind == "imp":
        mode = "oneshot" if cfg.lottery.one_shot else "imp"
        if cfg.lottery.rewind not in ("0it", "0ep"):
            mode += f"-rewind{cfg.lottery.rewind}"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{base}-{mode}-{config_hash(_for_kind(cfg, kind))}")


def _for_kind(cfg: ExperimentConfig, kind: str) -> Any:
    # A dense training does not depend on the pruning settings: leave them out of its hash.
    return cfg if kind == "imp" else {"data": cfg.data, "model": cfg.model, "train": cfg.train, "seed": cfg.seed}


def check_writable(folder: Path) -> None:
    """Fail before any training if runs cannot be written where asked."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise PermissionError(f"cannot write run folders to {folder}: {e.strerror}. "
                              "Choose another folder with --out DIR") from None


@dataclass(frozen=True)
class Unit:
    """One training inside a run: replicate, level, branch ('ticket', 'reinit', 'reinit2', 'random_prune')."""

    replicate: int
    level: int
    branch: str

    @property
    def key(self) -> str:
        return f"rep{self.replicate}/level{self.level:02d}/{self.branch}"


class RunStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._lock_fd: int | None = None
        self._record: dict[str, Any] | None = None

    # -- opening -----------------------------------------------------------------------------------
    @classmethod
    def for_config(cls, cfg: ExperimentConfig, kind: str = "imp") -> "RunStore":
        out = Path(cfg.out_dir)
        check_writable(out)
        store = cls(out / run_name(cfg, kind))
        store.root.mkdir(exist_ok=True)
        cfg_path = store.root / "config.json"
        record = {"kind": kind, "hash": config_hash(_for_kind(cfg, kind)), "config": to_dict(cfg)}
        if cfg_path.exists():
            old = json.loads(cfg_path.read_text())
            if old.get("hash") != record["hash"]:
                raise RuntimeError(f"{cfg_path} belongs to another config (hash {old.get('hash')}); "
                                   "remove the folder or choose another --out")
        else:
            write_json(cfg_path, record)
        # Same hash, but the extent (levels, replicates, controls) may have grown: the latest request is
        # recorded once this process holds the lock (a locked-out process must not rewrite it).
        store._record = record
        return store

    def config(self) -> dict[str, Any]:
        path = self.root / "config.json"
        if not path.exists():
            raise FileNotFoundError(f"{self.root} is not an lth run folder (no config.json)")
        return json.loads(path.read_text())["config"]

    # -- locking: two processes on one run folder would interleave their writes -------------------
    def lock(self) -> None:
        import fcntl

        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES):
                holder = (self.root / ".lock").read_text().strip() or "another process"
                raise RunLockedError(f"run folder {self.root} is in use by {holder}; wait for it to finish "
                                     "(it resumes cleanly) or run with another --out") from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"process {os.getpid()}".encode())
        self._lock_fd = fd
        if self._record is not None:
            write_json(self.root / "config.json", self._record)

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock; a killed process releases it too
            self._lock_fd = None

    def __enter__(self) -> "RunStore":
        self.lock()
        return self

    def __exit__(self, *exc) -> None:
        self.unlock()

    # -- paths -------------------------------------------------------------------------------------
    def rep_dir(self, replicate: int) -> Path:
        return self.root / f"rep{replicate}"

    def level_dir(self, replicate: int, level: int) -> Path:
        return self.rep_dir(replicate) / f"level{level:02d}"

    def unit_dir(self, unit: Unit) -> Path:
        return self.root / unit.key

    def is_done(self, unit: Unit) -> bool:
        return (self.unit_dir(unit) / "summary.json").exists()

    # -- results -----------------------------------------------------------------------------------
    def write_result(self, unit: Unit, metrics: list[dict[str, float]], summary: dict[str, Any]) -> None:
        d = self.unit_dir(unit)
        d.mkdir(parents=True, exist_ok=True)
        if metrics:
            tmp = d / f".metrics.csv.{os.getpid()}.tmp"
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(metrics[0]))
                w.writeheader()
                w.writerows(metrics)
            os.replace(tmp, d / "metrics.csv")
        write_json(d / "summary.json", summary)  # last: marks the training finished
        (d / "resume.pt").unlink(missing_ok=True)

    def summaries(self) -> list[dict[str, Any]]:
        """Every finished training's summary, in (replicate, level, branch) order."""
        out = []
        for path in sorted(self.root.glob("rep*/level*/*/summary.json")):
            out.append(json.loads(path.read_text()))
        return sorted(out, key=lambda s: (s["replicate"], s["level"], s["branch"]))

    def metrics(self, unit: Unit) -> list[dict[str, float]]:
        path = self.unit_dir(unit) / "metrics.csv"
        if not path.exists():
            return []
        with open(path) as f:
            return [{k: float(v) if v != "" else None for k, v in row.items()} for row in csv.DictReader(f)]
