"""What a safetensors file declares, read from its header before any tensor is loaded.

safetensors validates the header's layout, but loading a tensor of a dtype numpy lacks (BF16,
F8_*) raises ``TypeError``/``AttributeError`` deep inside, and a BOOL tensor loads as if it were
a number. ncood reads the dtypes first and refuses, in one line, any it does not read.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from ncood.errors import NcoodError

FLOATS = ("F16", "F32", "F64")
INTEGERS = ("I8", "I16", "I32", "I64", "U8", "U16", "U32", "U64")


def tensor_dtypes(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Name → (dtype, shape) of every tensor; call after ``safe_open`` accepted the file."""
    try:
        with open(path, "rb") as handle:
            (size,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(size))
    except (OSError, ValueError, struct.error, RecursionError) as exc:
        raise NcoodError(f"{path} is not a readable safetensors file ({exc})") from None
    if not isinstance(header, dict):
        raise NcoodError(f"{path} is not a readable safetensors file (header not an object)")
    return {
        name: (str(entry.get("dtype")), tuple(entry.get("shape", ())))
        for name, entry in header.items()
        if name != "__metadata__" and isinstance(entry, dict)
    }


def check_dtypes(path: Path, allowed) -> None:
    """Refuse a tensor whose dtype ``allowed(name)`` (a tuple of dtypes) does not list."""
    for name, (dtype, _) in sorted(tensor_dtypes(path).items()):
        wanted = allowed(name)
        if wanted and dtype not in wanted:
            raise NcoodError(
                f"{Path(path).name}: tensor {name!r} is {dtype}, which ncood does not read "
                f"(expected {' or '.join(wanted)})"
            )
