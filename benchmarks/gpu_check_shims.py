"""Stand-ins for the two small packages ncood's engine imports besides torch and numpy, for a
GPU machine whose python has torch and numpy only (no network to install anything).

``pluggy``: only the markers (``import ncood`` defines ``hookimpl``); no plugin runs in the
check. ``safetensors``: a reader of the file format (an 8-byte header length, a JSON header,
raw little-endian tensors), which is all a resume needs; ncood writes its files itself
(ncood.store.streamed). Installed only for a package that is missing, and the check's
JSON names what was stood in for.
"""

from __future__ import annotations

import importlib.util
import json
import struct
import sys
import types

import numpy as np

_DTYPES = {
    "F32": np.float32,
    "F64": np.float64,
    "I64": np.int64,
    "U8": np.uint8,
    "I32": np.int32,
    "F16": np.float16,
    "BOOL": np.bool_,
}


def read_safetensors(path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Every tensor of a safetensors file as a numpy array, and the file's metadata."""
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
        data = handle.read()
    metadata = header.pop("__metadata__", {}) or {}
    arrays = {}
    for name, entry in header.items():
        start, stop = entry["data_offsets"]
        dtype = np.dtype(_DTYPES[entry["dtype"]]).newbyteorder("<")
        array = np.frombuffer(data[start:stop], dtype=dtype).reshape(entry["shape"])
        arrays[name] = array.astype(dtype.newbyteorder("="), copy=True)
    return arrays, metadata


def _pluggy() -> types.ModuleType:
    module = types.ModuleType("pluggy")

    class _Marker:
        def __init__(self, project_name: str) -> None:
            self.project_name = project_name

        def __call__(self, function=None, **options):
            return function if function is not None else (lambda f: f)

    module.HookspecMarker = module.HookimplMarker = _Marker
    module.__ncood_shim__ = True
    return module


def _safetensors() -> dict[str, types.ModuleType]:
    root = types.ModuleType("safetensors")

    class SafetensorError(Exception):
        pass

    def safe_open(*args, **kwargs):
        raise SafetensorError("safetensors is not installed here (gpu_check stand-in)")

    root.SafetensorError, root.safe_open, root.__ncood_shim__ = SafetensorError, safe_open, True

    def refuse(*args, **kwargs):
        raise SafetensorError("safetensors is not installed here (gpu_check stand-in)")

    as_numpy = types.ModuleType("safetensors.numpy")
    as_numpy.load_file = lambda path: read_safetensors(path)[0]
    as_numpy.save_file = refuse
    as_torch = types.ModuleType("safetensors.torch")

    def load_torch(path, device="cpu"):
        import torch

        return {k: torch.from_numpy(v) for k, v in read_safetensors(path)[0].items()}

    as_torch.load_file, as_torch.save_file = load_torch, refuse
    root.numpy, root.torch = as_numpy, as_torch
    return {"safetensors": root, "safetensors.numpy": as_numpy, "safetensors.torch": as_torch}


def install_missing() -> list[str]:
    """Stand in for pluggy and safetensors where they are not installed; returns which."""
    shimmed = []
    if importlib.util.find_spec("pluggy") is None:
        sys.modules["pluggy"] = _pluggy()
        shimmed.append("pluggy")
    if importlib.util.find_spec("safetensors") is None:
        sys.modules.update(_safetensors())
        shimmed.append("safetensors")
    return shimmed
