"""Where dataset files are looked for, and the message that says where to put them when they are missing."""

from __future__ import annotations

import os
from pathlib import Path

from .core import DATA_DIR_HINT, DataError

# Folders that OS packages install datasets into (Debian's dataset-fashion-mnist, fortunes-min); searched
# after the user's own folders.
SYSTEM_DIRS: dict[str, list[Path]] = {
    "fashion_mnist": [Path("/usr/share/datasets/fashion-mnist")],
    "chars": [Path("/usr/share/games/fortunes")],
}


def resolve_data_dir(data_dir: str | Path | None) -> Path:
    """The data folder: the argument if given, else $LTH_DATA, else ~/.cache/lth."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get("LTH_DATA", "")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "lth"


def dataset_dir(name: str, data_dir: str | Path | None) -> Path:
    """The canonical folder for `name`: downloads and caches are written here."""
    return resolve_data_dir(data_dir) / name


def search_dirs(name: str, data_dir: str | Path | None) -> list[Path]:
    """Folders searched for `name`'s files, most specific first.

    data_dir/<name>/ comes before data_dir itself so that a folder holding several IDX datasets in
    per-name subfolders never mixes them up (MNIST and Fashion-MNIST files have the same names).
    """
    root = resolve_data_dir(data_dir)
    dirs = [root / name, *SYSTEM_DIRS.get(name, []), root]
    out: list[Path] = []
    for d in dirs:
        if d not in out:
            out.append(d)
    return out


def is_data_file(path: Path) -> bool:
    """Whether `path` is a file; something else under a data file's name (a folder, say) is a DataError that
    names it, where it would otherwise be taken for a missing file and "downloaded" over."""
    if path.is_file():
        return True
    if path.exists():
        raise DataError(f"{path} is not a file (a folder or something else has the name of a data file). Fix: "
                        "move it away, and put the file itself there.")
    return False


def find_file(folder: Path, filename: str) -> Path | None:
    """`folder/filename` as given, or its gzipped / un-gzipped twin (`X.gz` and raw `X` both accepted)."""
    base = filename[:-3] if filename.endswith(".gz") else filename
    for candidate in (folder / (base + ".gz"), folder / base):
        if is_data_file(candidate):
            return candidate
    return None


def missing_files_error(
    label: str, files: list[str], searched: list[Path], target: Path, download: bool
) -> DataError:
    why = "" if download else " and downloading is off (download=False)"
    return DataError(
        f"{label} files not found{why}: {', '.join(files)}. Searched: {', '.join(map(str, searched))}. "
        f"Fix: put these files in {target}, or point {DATA_DIR_HINT} at the folder that holds them"
        + ("" if download else ", or allow downloading (download=True)")
        + "."
    )
