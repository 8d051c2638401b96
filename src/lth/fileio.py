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


def _umask_mode() -> int:
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


def write_bytes(path: str | Path, data: bytes) -> None:
    """Atomically replace `path` with `data` (see the module's docstring)."""
    path = Path(path)
    refuse_link(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(tmp, flags, _umask_mode())
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise disk_full(path) from None
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise OutputFolderError(f"cannot write {path}: {e.strerror}. Choose a writable folder.") from None
        raise
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise disk_full(path) from None
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


def save_weights(state, path: str | Path) -> None:
    """A state dict (or an nn.Module's) as safetensors: portable, and loading it cannot run code."""
    from safetensors.torch import save

    if hasattr(state, "state_dict"):
        state = state.state_dict()
    write_bytes(path, save({k: v.detach().contiguous().cpu() for k, v in state.items()}))


def load_weights(path: str | Path, device="cpu",
                 fix: str = "Delete it (and the trainings that made it) to recompute it.") -> dict:
    """The tensors of a safetensors file; a damaged file is a RunFolderError naming it and `fix`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise RunFolderError(f"{path} is missing. {fix}")
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise damaged(path, f"not a readable safetensors file: {e}", fix) from None
