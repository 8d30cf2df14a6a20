"""Write a safetensors file row block by row block, so a writer's memory does not grow with N.

The header is known before any data (every shape is), so the file is laid out once, then each
block of rows lands at its offset with ``os.pwrite``. The result is an ordinary safetensors
file (readable by ``safetensors`` and :func:`ncood.store.features.load_features`), written
through a temp file and renamed, like every ncood write. A write error (disk full) is
remembered rather than raised mid-stream, so under torchrun rank 0 keeps answering its peers'
collectives and the error surfaces, for every rank at once, when the file is closed.
Features files go through :class:`ncood.store.features_writer.FeaturesWriter`, which gives
this writer their layout; weights and resume state use it directly.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np

from ncood.store.atomic import atomic_path

_DTYPES = {
    np.dtype(np.float32): "F32",
    np.dtype(np.float64): "F64",
    np.dtype(np.int64): "I64",
    np.dtype(np.uint8): "U8",
}


class StreamedSafetensors:
    def __init__(
        self,
        path: str | os.PathLike,
        layout: dict[str, tuple[np.dtype, tuple[int, ...]]],
        metadata: dict[str, str],
    ) -> None:
        self.path = Path(path)
        self.layout = {
            name: (np.dtype(dtype), tuple(shape)) for name, (dtype, shape) in layout.items()
        }
        self.metadata = metadata
        self.error: OSError | None = None
        self._offsets: dict[str, int] = {}
        self._fd: int | None = None
        self._context = None

    def _header(self) -> tuple[bytes, int]:
        header: dict[str, object] = {"__metadata__": self.metadata}
        offset = 0
        for name in sorted(self.layout):
            dtype, shape = self.layout[name]
            size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            header[name] = {
                "dtype": _DTYPES[dtype],
                "shape": list(shape),
                "data_offsets": [offset, offset + size],
            }
            self._offsets[name] = offset
            offset += size
        encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
        encoded += b" " * (-len(encoded) % 8)
        return struct.pack("<Q", len(encoded)) + encoded, offset

    def __enter__(self) -> StreamedSafetensors:
        self._context = atomic_path(self.path)
        tmp = self._context.__enter__()
        header, data_size = self._header()
        self._data_start = len(header)
        self._fd = os.open(tmp, os.O_WRONLY)
        try:
            os.write(self._fd, header)
            os.ftruncate(self._fd, self._data_start + data_size)
        except OSError as exc:
            self.error = exc
        return self

    def write_rows(self, name: str, start_row: int, rows: np.ndarray) -> None:
        """Rows ``start_row …`` of tensor ``name`` (row-major, so one contiguous span)."""
        if self.error is not None:
            return
        dtype, shape = self.layout[name]
        rows = np.ascontiguousarray(rows, dtype=dtype.newbyteorder("<"))
        if rows.shape[1:] != shape[1:] or start_row + rows.shape[0] > (shape[0] if shape else 1):
            raise ValueError(f"{name}: rows {rows.shape} at {start_row} do not fit {shape}")
        row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        position = self._data_start + self._offsets[name] + start_row * row_bytes
        payload = memoryview(rows.reshape(-1).view(np.uint8))
        try:
            while payload:
                written = os.pwrite(self._fd, payload, position)
                payload, position = payload[written:], position + written
        except OSError as exc:
            self.error = exc

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self._fd is not None:
            os.close(self._fd)
        if exc is None and self.error is not None:
            exc_type, exc = type(self.error), self.error
        try:
            self._context.__exit__(exc_type, exc, tb)
        finally:
            self._context = None
        if exc is not None and exc is self.error:
            raise self.error
        return False


def write_arrays(path: str | os.PathLike, arrays: dict[str, np.ndarray], metadata: dict) -> None:
    """Whole arrays (weights, a resume state) as one safetensors file, streamed and atomic."""
    layout = {name: (array.dtype, array.shape) for name, array in arrays.items()}
    with StreamedSafetensors(path, layout, metadata) as out:
        for name, array in arrays.items():
            out.write_rows(name, 0, array.reshape(1) if array.ndim == 0 else array)
