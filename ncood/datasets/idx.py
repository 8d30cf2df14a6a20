"""The IDX files of MNIST and Fashion-MNIST as their publishers distribute them (``*-idx?-ubyte``,
gzip-compressed or not), read offline without torchvision's download step: one line naming the
file when it is missing or not IDX.

IDX: two zero bytes, a type byte (0x08 = uint8), the rank, then one big-endian uint32 size per
dimension, then the values in C order.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from ncood.errors import NcoodError

UINT8 = 0x08


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of uint8 values (``.gz`` or plain) as an array of its stated shape."""
    try:
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise NcoodError(f"could not read {path} ({exc})") from None
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != UINT8 or not 1 <= data[3] <= 4:
        raise NcoodError(f"{path} is not an IDX file of bytes (its header is {data[:4].hex()})")
    rank = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank))
    start = 4 + 4 * rank
    if len(data) - start != int(np.prod(shape)):
        raise NcoodError(
            f"{path} holds {len(data) - start} values where its header states {shape}: "
            f"truncated or damaged"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=start).reshape(shape)


def find_idx(folders: list[Path], names: list[str]) -> dict[str, Path] | None:
    """In the first of ``folders`` that holds them all, each IDX file of ``names`` (stems such
    as ``train-images-idx3-ubyte``), compressed or not; None when no folder holds them all."""
    for folder in folders:
        found = {}
        for name in names:
            candidates = [folder / name, folder / f"{name}.gz"]
            path = next((p for p in candidates if p.is_file()), None)
            if path is None:
                break
            found[name] = path
        else:
            return found
    return None
