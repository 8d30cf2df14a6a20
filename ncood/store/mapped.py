"""A safetensors file opened, not loaded: tensors are views on one read-only memory map, and
row blocks are read with ``os.preadv`` into buffers the caller may reuse.

Why both: a mapped view is what a plugin indexing ``split.features`` expects (an ndarray, any
rows, nothing read up front), but every page it touches stays in the process's resident set
until the kernel needs it back, so a pass over a 17 GB file through the map "uses" 17 GB.
A ``preadv`` into a buffer that is dropped after the block leaves only the page cache holding
the data — shared, reclaimable, not counted as the process's memory. The streamed passes of
the built-in scorers (``Split.chunks``) read that way.

The header gives each tensor's byte range (``data_offsets``, relative to the end of the
header). safetensors itself validates the header before this module trusts it
(:func:`open_mapped` is called after ``safe_open`` succeeded); the ranges are still checked
against the file's size here, so a truncated file is an error, not a bus error later.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HEADER_LIMIT = 100 << 20  # safetensors' own limit on the JSON header
DTYPES = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U8": "u1",
    "BOOL": "?",
}


class MappedFileError(ValueError):
    """The header does not describe the bytes on disk (truncated file, bad ranges)."""


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lies in the file: ``offset`` is absolute (header included)."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    offset: int
    nbytes: int

    @property
    def row_bytes(self) -> int:
        """Bytes of one row (one leading index); the tensor's size for a 0-d tensor."""
        inner = int(np.prod(self.shape[1:], dtype=np.int64)) if self.shape else 1
        return inner * self.dtype.itemsize


class MappedFile:
    """The tensors of one safetensors file, mapped read-only, plus block reads by offset."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        fd = os.open(self.path, os.O_RDONLY)
        self._fd = fd
        self._closer = weakref.finalize(self, os.close, fd)
        try:
            self.size = os.fstat(fd).st_size
            self.metadata, self.tensors = _parse_header(fd, self.size)
            self._map = mmap.mmap(fd, 0, access=mmap.ACCESS_READ) if self.size else None
        except BaseException:
            self._closer()
            raise
        if hasattr(os, "posix_fadvise"):  # passes read front to back: ask for big read-ahead
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)

    def array(self, name: str) -> np.ndarray:
        """A read-only view of the tensor on the memory map (nothing is read until touched)."""
        info = self.tensors[name]
        count = int(np.prod(info.shape, dtype=np.int64))
        if count == 0:
            return np.empty(info.shape, info.dtype)
        view = np.frombuffer(self._map, info.dtype, count, info.offset)
        return view.reshape(info.shape)

    def read(self, name: str) -> np.ndarray:
        """The whole tensor, copied into memory (for small tensors: the head, the labels)."""
        info = self.tensors[name]
        return self.read_rows(name, 0, info.shape[0]) if info.shape else self.array(name).copy()

    def read_rows(
        self, name: str, start: int, stop: int, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Rows ``start:stop`` of tensor ``name``, read with ``preadv`` into ``out`` (C-contiguous,
        of the tensor's dtype and row shape, at least that many rows: the rows read are its
        first ones, returned as a view) or into a new array."""
        info = self.tensors[name]
        stop = min(stop, info.shape[0])
        start = min(start, stop)
        shape = (stop - start, *info.shape[1:])
        if out is None:
            out = np.empty(shape, info.dtype)
        else:
            if out.dtype != info.dtype or out.shape[1:] != shape[1:] or len(out) < shape[0]:
                raise ValueError(f"buffer {out.dtype}{out.shape} cannot hold {name} {shape}")
            out = out[: shape[0]]
        if out.size == 0:
            return out
        position = info.offset + start * info.row_bytes
        buffer = memoryview(out.reshape(-1).view(np.uint8))
        if not hasattr(os, "preadv"):  # platforms without preadv: copy from the map
            buffer[:] = self._map[position : position + len(buffer)]
            return out
        while len(buffer):
            got = os.preadv(self._fd, [buffer], position)
            if got <= 0:
                raise MappedFileError(f"{self.path.name}: unexpected end of file in {name!r}")
            buffer, position = buffer[got:], position + got
        return out

    def close(self) -> None:
        """Close the descriptor; views already handed out keep the map alive."""
        self._closer()


def _parse_header(fd: int, size: int) -> tuple[dict[str, str], dict[str, TensorInfo]]:
    if size < 8:
        raise MappedFileError("file too short for a safetensors header")
    (length,) = struct.unpack("<Q", os.pread(fd, 8, 0))
    if length > min(HEADER_LIMIT, size - 8):
        raise MappedFileError(f"header length {length} exceeds the file")
    try:
        header = json.loads(os.pread(fd, length, 8))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MappedFileError(f"header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise MappedFileError("header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    data_start, data_size = 8 + length, size - 8 - length
    tensors = {}
    for name, entry in header.items():
        try:
            dtype = np.dtype(DTYPES[entry["dtype"]])
            shape = tuple(int(n) for n in entry["shape"])
            begin, end = (int(n) for n in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise MappedFileError(f"tensor {name!r}: unsupported or malformed entry") from None
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if min(shape, default=0) < 0 or not 0 <= begin <= end <= data_size or end - begin != nbytes:
            raise MappedFileError(
                f"tensor {name!r}: bytes {begin}..{end} do not hold shape {list(shape)} "
                f"within the {data_size} data bytes of the file"
            )
        tensors[name] = TensorInfo(name, dtype, shape, data_start + begin, nbytes)
    return {str(k): str(v) for k, v in metadata.items()}, tensors
