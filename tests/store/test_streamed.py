"""The streamed safetensors writer: an ordinary file, written block by block in any order, and
a write error that leaves the previous file in place."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

from ncood.store.streamed import StreamedSafetensors


def test_streamed_file_is_ordinary_safetensors(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "b/matrix": rng.normal(size=(10, 3)).astype(np.float32),
        "a/labels": rng.integers(-1, 5, size=10).astype(np.int64),
        "rng/bytes": rng.integers(0, 256, size=33).astype(np.uint8),
        "scalar": np.array(2.5, dtype=np.float64),
    }
    layout = {name: (a.dtype, a.shape) for name, a in arrays.items()}
    path = tmp_path / "x.safetensors"
    with StreamedSafetensors(path, layout, {"format": "test", "n": "10"}) as out:
        out.write_rows("b/matrix", 6, arrays["b/matrix"][6:])  # blocks in any order
        out.write_rows("b/matrix", 0, arrays["b/matrix"][:6])
        out.write_rows("a/labels", 0, arrays["a/labels"])
        out.write_rows("rng/bytes", 0, arrays["rng/bytes"])
        out.write_rows("scalar", 0, arrays["scalar"].reshape(1))
        with pytest.raises(ValueError, match="do not fit"):
            out.write_rows("b/matrix", 8, arrays["b/matrix"][:3])
    loaded = load_file(str(path))
    assert set(loaded) == set(arrays)
    for name, array in arrays.items():
        assert loaded[name].dtype == array.dtype and np.array_equal(loaded[name], array), name
    with safe_open(str(path), framework="numpy") as handle:
        assert handle.metadata() == {"format": "test", "n": "10"}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_disk_full_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "x.safetensors"
    path.write_bytes(b"previous content")
    layout = {"m": (np.dtype(np.float32), (4, 2))}

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    with (
        pytest.raises(OSError) as caught,
        StreamedSafetensors(path, layout, {}) as out,
    ):
        out.write_rows("m", 0, np.zeros((4, 2), np.float32))  # remembered, not raised here
    assert caught.value.errno == errno.ENOSPC
    assert path.read_bytes() == b"previous content"
    assert [p.name for p in tmp_path.iterdir()] == ["x.safetensors"]
