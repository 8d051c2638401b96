"""Reader for the IDX format of (Fashion-)MNIST, strict enough that a damaged file is never loaded."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from .core import DataError

# Third byte of the magic number -> element type (big-endian, per the format's definition).
_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _damaged(path: Path, problem: str) -> DataError:
    return DataError(
        f"{path} is damaged ({problem}). Fix: delete it and download it again (or re-copy it from a good "
        "source)."
    )


def read_bytes(path: Path) -> bytes:
    """The file's content, gunzipped if it ends in .gz; a truncated or corrupt gzip is a DataError."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise _damaged(path, f"gzip stream is truncated or corrupt: {e}") from e


def read_idx(path: str | Path) -> np.ndarray:
    """Array stored in an IDX file (raw or .gz); dims come from the header and the payload must match."""
    path = Path(path)
    data = read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise _damaged(path, "not an IDX file: bad magic number")
    dtype, ndim = _DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise _damaged(path, "header is cut short")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise _damaged(
            path,
            f"header says {'x'.join(map(str, dims))} but the payload has {len(data) - header} bytes, "
            f"not {expected}",
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def read_header(path: str | Path) -> tuple[int, ...]:
    """Dims from the header alone (reads only the first bytes): a cheap sanity check."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _DTYPES:
                raise _damaged(path, "not an IDX file: bad magic number")
            raw = f.read(4 * head[3])
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise _damaged(path, f"gzip stream is truncated or corrupt: {e}") from e
    if len(raw) < 4 * head[3]:
        raise _damaged(path, "header is cut short")
    return tuple(int(d) for d in np.frombuffer(raw, dtype=">u4"))
