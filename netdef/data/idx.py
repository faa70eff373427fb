"""The IDX file format of MNIST (gzipped or not): header reading and whole-file loading."""
from __future__ import annotations

import contextlib
import gzip
import struct
import zlib
from pathlib import Path

_DTYPES = {0x08: ("B", 1), 0x09: ("b", 1), 0x0B: (">h", 2), 0x0C: (">i", 4), 0x0D: (">f", 4), 0x0E: (">d", 8)}


class IdxError(Exception):
    pass


def _open(path: Path):
    with open(path, "rb") as probe:
        magic = probe.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def _header(stream, path):
    head = stream.read(4)
    if len(head) != 4 or head[0] != 0 or head[1] != 0 or head[2] not in _DTYPES:
        raise IdxError(f"{path} is not an IDX file (bad magic number)")
    ndim = head[3]
    raw = stream.read(4 * ndim)
    if len(raw) != 4 * ndim:
        raise IdxError(f"{path} is truncated: its header ends before its {ndim} dimensions")
    return head[2], struct.unpack(f">{ndim}I", raw)


@contextlib.contextmanager
def _reading(path: Path):
    """The file's stream; a damaged gzip stream is an IdxError naming the file, not a zlib traceback."""
    try:
        with _open(path) as stream:
            yield stream
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise IdxError(f"{path} is a damaged or truncated gzip file ({exc})") from None


def idx_shape(path) -> tuple:
    """The dimensions written in an IDX file's header, without reading its data."""
    path = Path(path)
    with _reading(path) as stream:
        return _header(stream, path)[1]


def read_idx(path):
    """The whole IDX file as a torch tensor (uint8 files stay uint8)."""
    import numpy as np
    import torch
    path = Path(path)
    with _reading(path) as stream:
        code, dims = _header(stream, path)
        data = stream.read()
    fmt, size = _DTYPES[code]
    count = 1
    for d in dims:
        count *= d
    if len(data) != count * size:
        raise IdxError(f"{path} is truncated: header says {count} items, file holds {len(data) // size}")
    dtype = np.dtype(fmt.replace("B", "u1").replace("b", "i1"))
    return torch.from_numpy(np.frombuffer(data, dtype=dtype).astype(dtype.newbyteorder("="), copy=True).reshape(dims))
