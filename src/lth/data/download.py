"""Fetching dataset files: canonical URLs, md5 checksums, temp file + verify + atomic rename.

Tests replace `urlopen` in this module (and entries of RESOURCES) to exercise every path offline.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError
from urllib.request import Request, urlopen

from lth.fileio import disk_full, umask_mode

from .core import DATA_DIR_HINT, DataError

TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Resource:
    filename: str
    md5: str
    urls: tuple[str, ...]  # mirrors, tried in order


def _mirrored(filename: str, md5: str, bases: tuple[str, ...]) -> Resource:
    return Resource(filename, md5, tuple(base + filename for base in bases))


_MNIST = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_FASHION = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
_TORONTO = ("https://www.cs.toronto.edu/~kriz/",)

# md5 of the official full files (the values torchvision checks).
RESOURCES: dict[str, list[Resource]] = {
    "mnist": [
        _mirrored("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873", _MNIST),
        _mirrored("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432", _MNIST),
        _mirrored("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3", _MNIST),
        _mirrored("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c", _MNIST),
    ],
    "fashion_mnist": [
        _mirrored("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d", _FASHION),
        _mirrored("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe", _FASHION),
        _mirrored("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79", _FASHION),
        _mirrored("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310", _FASHION),
    ],
    "cifar10": [_mirrored("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", _TORONTO)],
    "cifar100": [_mirrored("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85", _TORONTO)],
}


def _fetch_to(url: str, folder: Path) -> tuple[Path, str]:
    """Stream `url` into a temp file in `folder` (same filesystem, so the final rename is atomic)."""
    fd, tmp = tempfile.mkstemp(prefix=".download-", dir=folder)
    digest = hashlib.md5(usedforsecurity=False)
    try:
        request = Request(url, headers={"User-Agent": "lth"})
        with os.fdopen(fd, "wb") as out, urlopen(request, timeout=TIMEOUT_S) as r:
            while chunk := r.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp), digest.hexdigest()


def download(name: str, filenames: list[str], folder: Path) -> None:
    """Download `filenames` of dataset `name` into `folder`, each verified against its md5.

    The first network failure on every mirror of a file stops everything at once (an offline machine must
    not wait out one timeout per file); the message lists what to fetch by hand and where to put it.
    """
    by_name = {r.filename: r for r in RESOURCES.get(name, [])}
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(
            f"cannot create {folder} to download {name} into ({e}). Fix: point {DATA_DIR_HINT} at a writable "
            "folder, or one that already holds the files."
        ) from e
    for filename in filenames:
        res = by_name.get(filename)
        if res is None:
            raise DataError(f"no download source is known for {filename} of {name}; put the file in {folder}")
        problems: list[str] = []
        offline = True
        for url in res.urls:
            try:
                tmp, md5 = _fetch_to(url, folder)
            except (URLError, OSError, ValueError, http.client.HTTPException) as e:  # offline, 404, cut
                if getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT):  # no other mirror helps with that
                    raise disk_full(folder / filename) from None
                problems.append(f"{url}: {getattr(e, 'reason', None) or e}")
                continue
            if md5 != res.md5:
                tmp.unlink(missing_ok=True)  # never keep a file that failed verification
                offline = False
                problems.append(f"{url}: checksum mismatch (md5 {md5}, expected {res.md5})")
                continue
            os.chmod(tmp, umask_mode())  # mkstemp makes files private; lth's files all get the umask's mode
            os.replace(tmp, folder / filename)
            break
        else:
            what = "could not be downloaded" if offline else "failed checksum verification"
            source = res.urls[0].rsplit("/", 1)[0] + "/"
            raise DataError(
                f"{name}: {filename} {what} ({'; '.join(problems)}). Fix: get {', '.join(filenames)} "
                f"yourself (e.g. from {source}) and put them in {folder}, or point {DATA_DIR_HINT} at a "
                "folder that already holds them."
            )
