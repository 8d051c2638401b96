"""Run folders: the one owner of their layout. Everything else (experiments, executors, the report, `lth
show`) reaches a run's files through a RunStore.

Layout of a run folder::

    <name>-<mode>-<hash>/
      config.json              {"format", "experiment", "hash", "config"}: the resolved config
      plan.json                what the latest request runs (e.g. P_m of each level)
      .lock                    held by the process working on the run
      rep0/init.safetensors    θ_0 of replicate 0
      rep0/rewind.safetensors  θ_k when rewinding to k > 0
      rep0/level03/mask.safetensors (+ .json)      the level's mask
      rep0/level03/ticket/     metrics.csv, summary.json, final.safetensors, resume.pt while training
      rep0/level03/reinit/     ... one folder per branch (a control's own mask, if it has one, is here)
      tensorboard/             with --log tensorboard: a copy of the curves for TensorBoard (lth.tracking)

A training is finished exactly when its summary.json exists: it is written last, atomically, so a kill at
any moment leaves either a finished training or one that resumes from resume.pt. Every file is written
through lth.fileio (atomic, never through a link), and every file read back is checked against its place:
a summary copied into another folder, or a config edited by hand, is refused with the file named.
"""

from __future__ import annotations

import csv
import errno
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lth.config import config_hash, experiment_name, legacy_hash, to_dict
from lth.errors import OutputFolderError, RunFolderError, RunLockedError
from lth.fileio import (
    damaged,
    disk_full,
    read_json,
    read_text,
    refuse_link,
    umask_mode,
    write_json,
    write_text,
)
from lth.records import Summary

__all__ = ["RunLockedError", "RunStore", "Unit", "check_writable", "run_name", "write_json"]

FORMAT = 2
"""config.json's format: 1 (lth 0.1: "kind", a hash of every field) or 2 ("experiment", non-default fields)."""

_LEGACY_KINDS = {"imp": "imp", "train": "train"}
_UNIT_DIR = re.compile(r"^rep(\d+)/level(\d+)/([A-Za-z0-9_]+)$")


def run_name(cfg: Any, mode: str | None = None, hash_: str | None = None) -> str:
    """`<preset or model_dataset>-<mode>-<hash>`, e.g. `mnist1d_mlp-imp-1a2b3c4d`."""
    base = cfg.preset or (cfg.base_name() if hasattr(cfg, "base_name") else f"{cfg.model.name}_{cfg.data.dataset}")
    mode = mode or cfg.folder_mode()
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{base}-{mode}-{hash_ or config_hash(cfg)}")


def _same(a: float, b: float) -> bool:
    return a == b or (a != a and b != b)  # NaN (a diverged training) equals NaN here


def check_writable(folder: Path) -> None:
    """Fail before any training if runs cannot be written where asked."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # A fresh name, created exclusively: a link planted in a shared folder is never followed.
        probe = folder / f".write-test-{os.getpid()}-{os.urandom(4).hex()}"
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600))
        probe.unlink()
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise disk_full(folder) from None
        raise OutputFolderError(f"cannot write run folders to {folder}: {e.strerror}. "
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

    def __getstate__(self) -> dict:
        """A store sent to a worker process (Ray): its absolute path, without this process's lock."""
        return {**self.__dict__, "root": self.root.absolute(), "_lock_fd": None}

    # -- opening -----------------------------------------------------------------------------------
    @classmethod
    def for_config(cls, cfg: Any, mode: str | None = None, log=print) -> "RunStore":
        """The run folder of `cfg` under cfg.out_dir, made if new. A folder lth 0.1 made for the same config
        (named by its older hash) is adopted: renamed to today's name, so it resumes instead of retraining."""
        out = Path(cfg.out_dir)
        check_writable(out)
        hash_ = config_hash(cfg)
        mode = mode or cfg.folder_mode()
        store = cls(out / run_name(cfg, mode, hash_))
        record = {"format": FORMAT, "experiment": experiment_name(cfg), "hash": hash_, "config": to_dict(cfg)}
        cfg_path = store.root / "config.json"
        old = legacy_hash(cfg)
        if not store.root.exists() and old is not None and (out / run_name(cfg, mode, old)).is_dir():
            if store._adopt(out / run_name(cfg, mode, old), old, log):
                write_json(cfg_path, record)
        store.root.mkdir(exist_ok=True)
        if cfg_path.exists():
            found = store.record()
            if found.get("hash") != hash_:
                raise RunFolderError(f"{cfg_path} belongs to another config (hash {found.get('hash')}, expected "
                                     f"{hash_}); remove the folder or choose another --out")
        else:
            write_json(cfg_path, record)
        # Same hash, but the extent (levels, replicates, controls) may have grown: the latest request is
        # recorded once this process holds the lock (a locked-out process must not rewrite it).
        store._record = record
        return store

    def _adopt(self, legacy: Path, old_hash: str, log) -> bool:
        found = RunStore(legacy).record()
        if found.get("hash") != old_hash:
            return False
        with RunStore(legacy):  # refuses while an older lth still works on it
            os.rename(legacy, self.root)
        log(f"note: {legacy.name} was made by lth 0.1 for this config; renamed it to {self.root.name} "
            "(run folders are now named by the settings that differ from the defaults) and resuming it")
        return True

    @classmethod
    def open(cls, root: str | Path) -> "RunStore":
        """An existing run folder, for reading: its config.json must be there and sound."""
        store = cls(root)
        if not store.root.is_dir():
            raise RunFolderError(f"run folder {store.root} does not exist")
        store.record()
        return store

    def record(self) -> dict[str, Any]:
        """config.json: format, experiment, hash and the resolved config (an lth 0.1 file is read as format 1)."""
        path = self.root / "config.json"
        if not path.exists():
            raise RunFolderError(f"{self.root} is not an lth run folder (no config.json); give a folder printed "
                                 "by `lth run`")
        fix = ("It is written when a run starts and never changes; restore it from a copy of the run, or delete "
               "the run folder and start over.")
        data = read_json(path, fix)
        if not isinstance(data.get("config"), dict) or not isinstance(data.get("hash"), str):
            raise damaged(path, "no config or hash in it", fix)
        if "experiment" not in data:
            data = {"format": 1, "experiment": _LEGACY_KINDS.get(data.get("kind", "imp"), "imp"), **data}
        match = re.search(r"-([0-9a-f]{8})$", self.root.name)
        if match and match.group(1) != data["hash"]:
            raise RunFolderError(f"{path} records hash {data['hash']}, but the folder's name says {match.group(1)}: "
                                 "the config was edited or the file copied from another run. Restore the run's own "
                                 "config.json, or rename the folder if that was deliberate.")
        return data

    def config(self) -> dict[str, Any]:
        return self.record()["config"]

    def loggers(self) -> list[str]:
        """The trackers (`--log`) the latest request of this run asked for."""
        return list((self._record or self.record())["config"].get("log") or [])

    def experiment(self) -> str:
        return self.record()["experiment"]

    # -- locking: two processes on one run folder would interleave their writes -------------------
    def lock(self) -> None:
        import fcntl

        path = self.root / ".lock"
        refuse_link(path)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), umask_mode())
        except OSError as e:
            if e.errno == errno.ELOOP:
                refuse_link(path)
            raise OutputFolderError(f"cannot lock {path}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES):
                holder = path.read_text().strip() or "another process"
                raise RunLockedError(f"run folder {self.root} is in use by {holder}; wait for it to finish "
                                     "(it resumes cleanly) or run with another --out") from None
            raise
        self._lock_fd = fd
        try:  # who holds it, for the message above; informative only (a full disk must not stop here)
            os.ftruncate(fd, 0)
            os.write(fd, f"process {os.getpid()}".encode())
        except OSError:
            pass
        try:
            self.refuse_links()
            if self._record is not None:
                # The thread count the run's trainings have used so far is kept (see note_threads).
                old = self.record() if (self.root / "config.json").exists() else {}
                write_json(self.root / "config.json",
                           {**self._record, **({"threads": old["threads"]} if "threads" in old else {})})
        except BaseException:
            self.unlock()
            raise

    def refuse_links(self) -> None:
        """Refuse a run folder that holds a symbolic link anywhere inside it: lth writes into every folder of a
        run, and a link planted there (in a shared folder, or a run received from someone) would make it write
        elsewhere. Checked once, when a process takes the folder over."""
        for folder, dirs, files in os.walk(self.root):
            for name in dirs + files:
                if os.path.islink(os.path.join(folder, name)):
                    refuse_link(Path(folder) / name)

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock; a killed process releases it too
            self._lock_fd = None

    def __enter__(self) -> "RunStore":
        self.lock()
        return self

    def __exit__(self, *exc) -> None:
        self.unlock()

    # -- the CPU thread count: the matrix kernels may round differently with another one ------------
    def note_threads(self, threads: int) -> int | None:
        """Record in config.json the CPU thread count the run's trainings use, the first time any trains.
        Returns the recorded count when it differs from `threads` and trainings were already made with it,
        i.e. when this process would continue the run with another count (None otherwise)."""
        record = self.record()
        recorded = record.get("threads")
        if recorded == threads:
            return None
        if recorded is not None and self.units():
            return recorded
        write_json(self.root / "config.json", {**record, "threads": threads})
        return None

    # -- paths -------------------------------------------------------------------------------------
    def rep_dir(self, replicate: int) -> Path:
        return self.root / f"rep{replicate}"

    def level_dir(self, replicate: int, level: int) -> Path:
        return self.rep_dir(replicate) / f"level{level:02d}"

    def unit_dir(self, unit: Unit) -> Path:
        return self.root / unit.key

    def init_path(self, replicate: int) -> Path:
        """θ_0 of a replicate."""
        return self.rep_dir(replicate) / "init.safetensors"

    def rewind_path(self, replicate: int) -> Path:
        """θ_k of a replicate (rewinding to k > 0)."""
        return self.rep_dir(replicate) / "rewind.safetensors"

    def theta_path(self, replicate: int, step: int) -> Path:
        """θ_step of a replicate's dense training, for experiments that need it at several steps (instability's
        θ_k for each k, early-bird's snapshots at every evaluation)."""
        return self.rep_dir(replicate) / f"theta-{step}it.safetensors"

    def mask_path(self, replicate: int, level: int) -> Path:
        """The level's mask (the ticket's; controls with their own mask keep it in their unit folder)."""
        return self.level_dir(replicate, level) / "mask.safetensors"

    def unit_mask_path(self, unit: Unit) -> Path:
        return self.unit_dir(unit) / "mask.safetensors"

    def final_path(self, unit: Unit) -> Path:
        return self.unit_dir(unit) / "final.safetensors"

    def resume_path(self, unit: Unit) -> Path:
        return self.unit_dir(unit) / "resume.pt"

    def report_dir(self) -> Path:
        return self.root / "report"

    # -- the plan: what the latest request runs ------------------------------------------------------
    def write_plan(self, plan: dict[str, Any]) -> None:
        write_json(self.root / "plan.json", plan)

    def plan(self) -> dict[str, Any] | None:
        path = self.root / "plan.json"
        if not path.exists():
            return None
        return read_json(path, "It is rewritten when the run is resumed: rerun the command that made the run.")

    # -- results -----------------------------------------------------------------------------------
    def is_done(self, unit: Unit) -> bool:
        return (self.unit_dir(unit) / "summary.json").exists()

    def write_result(self, unit: Unit, metrics: list[dict[str, float]], summary: Summary | dict[str, Any]) -> None:
        """Record a finished training: metrics.csv, then summary.json (last: it marks the training finished)."""
        d = self.unit_dir(unit)
        d.mkdir(parents=True, exist_ok=True)
        if metrics:
            buf = io.StringIO(newline="")
            w = csv.DictWriter(buf, fieldnames=list(metrics[0]), lineterminator="\r\n")
            w.writeheader()
            w.writerows(metrics)
            write_text(d / "metrics.csv", buf.getvalue())
        record = summary.to_dict() if isinstance(summary, Summary) else summary
        if "tensorboard" in self.loggers():  # a copy for TensorBoard, before the summary marks it finished
            from lth.tracking import write_tensorboard

            write_tensorboard(self.root / "tensorboard", unit.key, metrics, record)
        write_json(d / "summary.json", record)
        self.resume_path(unit).unlink(missing_ok=True)

    def units(self) -> list[Unit]:
        """Every training folder on disk (finished or not), in (replicate, level, branch) order."""
        out = []
        for d in self.root.glob("rep[0-9]*/level[0-9]*/*"):
            m = _UNIT_DIR.match(d.relative_to(self.root).as_posix())
            if m and d.is_dir():
                out.append(Unit(int(m.group(1)), int(m.group(2)), m.group(3)))
        return sorted(out, key=lambda u: (u.replicate, u.level, u.branch))

    def levels_on_disk(self) -> list[int]:
        return sorted({int(p.name[5:]) for p in self.root.glob("rep[0-9]*/level[0-9]*") if p.is_dir()
                       and p.name[5:].isdigit()})

    def summary(self, unit: Unit) -> Summary:
        """A finished training's summary, checked against its place in the folder."""
        path = self.unit_dir(unit) / "summary.json"
        fix = (f"Delete {path.parent} to retrain that training (the rest of the run is kept), or restore the "
               "file from a copy of the run.")
        data = read_json(path, fix)
        try:
            s = Summary.from_dict(data)
        except TypeError:
            raise damaged(path, "missing replicate, level, branch or remaining_percent", fix) from None
        if (s.replicate, s.level, s.branch) != (unit.replicate, unit.level, unit.branch):
            raise RunFolderError(f"{path} describes replicate {s.replicate}, level {s.level}, branch {s.branch!r} "
                                 f"but sits in {unit.key}: it was copied or moved there. {fix}")
        return s

    def summaries(self) -> list[Summary]:
        """Every finished training's summary, in (replicate, level, branch) order."""
        return [self.summary(u) for u in self.units() if self.is_done(u)]

    def metrics(self, unit: Unit) -> list[dict[str, float | None]]:
        """metrics.csv as rows of floats (None where a value was not measured); [] when there is none."""
        path = self.unit_dir(unit) / "metrics.csv"
        if not path.exists():
            return []
        fix = f"Delete {path.parent} to retrain that training, or restore the file from a copy of the run."
        rows = list(csv.DictReader(io.StringIO(read_text(path, fix))))
        # A row cut short (a truncated file) has fewer cells than the header: DictReader fills them with None.
        if any(None in row or None in row.values() for row in rows):
            raise damaged(path, "a row has fewer or more cells than the header", fix)
        try:
            out = [{k: float(v) if v != "" else None for k, v in row.items()} for row in rows]
        except (TypeError, ValueError):
            raise damaged(path, "a value is not a number", fix) from None
        if not out or "step" not in out[0]:
            raise damaged(path, "no rows or no step column", fix)
        steps = [r["step"] for r in out]
        if None in steps or steps != sorted(set(steps)):
            raise damaged(path, "its steps are not increasing", fix)
        s = self.summary(unit) if self.is_done(unit) else None
        # lth's loop writes both files from one evaluation record (it always records an early stop); a user's
        # own loop (find_tickets, lth rl) logs what it likes and returns its own final numbers.
        if s is not None and s.early_stop_step is not None:
            if s.iterations is not None and steps[-1] != s.iterations:
                raise damaged(path, f"it ends at step {steps[-1]:.0f}, but the training ran {s.iterations} "
                                    "(summary.json)", fix)
            last = out[-1].get("test_acc")
            if s.final_test_acc is not None and last is not None and not _same(last, s.final_test_acc):
                raise damaged(path, f"its last test accuracy {last} is not the final one in summary.json "
                                    f"({s.final_test_acc})", fix)
        return out
