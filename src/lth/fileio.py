"""Every file lth writes goes through `write_bytes` (or the helpers built on it), and every file it reads back
from a run folder through `read_json` / `read_text` / `damaged`.

Writing: into a fresh temporary file in the same folder (created exclusively, never following a link),
flushed, then renamed over the target, so a kill at any moment leaves the old file or the new one, never
half of one. A target that is a symbolic link is refused: a link planted in a shared run folder must not
make lth overwrite a file elsewhere. Files get the mode the umask gives an ordinary new file (normally
0644), the same for every kind. A full disk is a `DiskFullError` that says rerunning resumes, and leaves no
temporary file behind.

Reading: a file that is empty, truncated or not what it should be is a `RunFolderError` naming the file and
what to do, instead of a parser's message that names neither.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

from lth.errors import DiskFullError, OutputFolderError, RunFolderError


def umask_mode() -> int:
    """The mode the umask gives an ordinary new file (0644 under umask 022, 0664 under 002): every file lth
    writes gets it, so whoever can read one file of a shared run can read all of them."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def refuse_link(path: Path) -> None:
    if path.is_symlink():
        raise RunFolderError(f"{path} is a symbolic link; lth does not write through links (a link in a run "
                             "folder could make it overwrite a file elsewhere). Remove the link and rerun.")


def disk_full(path: Path) -> DiskFullError:
    return DiskFullError(f"the disk is full: could not write {path}. Finished work is kept; free some space and "
                         "rerun the same command to resume.")


# A read-only place, no permission, or a file where a folder should be (or the reverse).
_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.EISDIR, errno.ENOENT)


def _write_error(path: Path, e: OSError) -> Exception:
    """The UserError for an OSError met while writing `path`, or `e` itself when it is not the user's to fix."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return disk_full(path)
    if e.errno in _NOT_WRITABLE:
        return OutputFolderError(f"cannot write {path}: {e.strerror}"
                                 f"{f' ({e.filename})' if e.filename and str(e.filename) != str(path) else ''}. "
                                 "Choose a writable folder.")
    return e


def make_dir(folder: str | Path) -> Path:
    """`folder` and its parents, made if missing; a file in the way, a read-only place or a full disk is a
    UserError naming the folder."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputFolderError(f"{folder} is a file, not a folder; choose a folder to write into") from None
    except OSError as e:
        raise _write_error(folder, e) from None
    return folder


def write_bytes(path: str | Path, data: bytes) -> None:
    """Atomically replace `path` with `data` (see the module's docstring)."""
    path = Path(path)
    refuse_link(path)
    make_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(tmp, flags, umask_mode())
    except OSError as e:
        raise _write_error(path, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise _write_error(path, e) from None
        raise


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=1))


def damaged(path: Path, problem: str, fix: str) -> RunFolderError:
    return RunFolderError(f"{path} is damaged ({problem}). {fix}")


def read_text(path: str | Path, fix: str) -> str:
    path = Path(path)
    try:
        return path.read_text()
    except UnicodeDecodeError:
        raise damaged(path, "not text", fix) from None


def read_json(path: str | Path, fix: str, kind: type | None = dict) -> Any:
    """The JSON in `path`; an empty, truncated or malformed file (or one whose top level is not `kind`) is a
    RunFolderError that names the file and `fix`."""
    path = Path(path)
    text = read_text(path, fix)
    if not text.strip():
        raise damaged(path, "empty", fix)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise damaged(path, f"not valid JSON: {e.msg} at line {e.lineno}", fix) from None
    if kind is not None and not isinstance(data, kind):
        raise damaged(path, f"expected a JSON {kind.__name__}, found {type(data).__name__}", fix)
    return data


PLACE = "lth_place"
"""The metadata entry of a safetensors file that says where in which run it belongs."""


def place_metadata(place: dict[str, Any] | None) -> dict[str, str] | None:
    """Safetensors metadata recording `place` (e.g. {"run": hash, "replicate": 0, "level": 3, "file": "mask"})."""
    return None if place is None else {PLACE: json.dumps(place, sort_keys=True)}


def check_place(path: Path, place: dict[str, Any] | None, fix: str) -> None:
    """Refuse a file whose metadata says it was written for another place than `place` (copied or moved from
    another replicate, level, branch or run). A file without the entry (written by an older lth) passes."""
    if place is None:
        return
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        found = (f.metadata() or {}).get(PLACE)
    if found is not None and json.loads(found) != json.loads(json.dumps(place)):
        def where(p: dict) -> str:
            return ", ".join(f"{k} {v}" for k, v in sorted(p.items()))

        raise RunFolderError(f"{path} was written for {where(json.loads(found))}, but it sits where {where(place)} "
                             f"belongs: it was copied or moved there. {fix}")


def save_weights(state, path: str | Path, place: dict[str, Any] | None = None) -> None:
    """A state dict (or an nn.Module's) as safetensors: portable, and loading it cannot run code. `place`, if
    given, is recorded in the file and checked when it is read back (`load_weights(..., place=)`)."""
    from safetensors.torch import save

    if hasattr(state, "state_dict"):
        state = state.state_dict()
    write_bytes(path, save({k: v.detach().contiguous().cpu() for k, v in state.items()}, place_metadata(place)))


def load_weights(path: str | Path, device="cpu",
                 fix: str = "Delete it (and the trainings that made it) to recompute it.",
                 place: dict[str, Any] | None = None) -> dict:
    """The tensors of a safetensors file; a damaged file, or one written for another place than `place`, is a
    RunFolderError naming it and `fix`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise RunFolderError(f"{path} is missing. {fix}")
    try:
        tensors = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise damaged(path, f"not a readable safetensors file: {e}", fix) from None
    check_place(path, place, fix)
    return tensors
