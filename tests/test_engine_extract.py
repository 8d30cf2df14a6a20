"""Streamed feature extraction: the file equals what the network computes, block by block."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import load_file

from ncood.engine.accel import Accel
from ncood.engine.data import normalise, synthetic_set
from ncood.engine.extract import dump_features, splits_of
from ncood.engine.model import STAGES, ResNet18
from ncood.engine.stream_writer import StreamedSafetensors
from ncood.features import load_features

CPU_ACCEL = Accel(torch.device("cpu"), None, False, False)


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


@pytest.mark.parametrize("with_stages", [False, True])
def test_dump_matches_the_network(tmp_path, with_stages):
    torch.manual_seed(0)
    data = synthetic_set(23, 9, num_classes=4)
    model = ResNet18(4, width=4).eval()
    mean, std = torch.tensor(data.mean), torch.tensor(data.std)
    ood = {"noise": synthetic_set(11, 1, num_classes=2, seed=5).train}
    ood["noise"].labels[:] = -1
    path = tmp_path / "features.safetensors"
    seen = []
    dump_features(
        path,
        model,
        splits_of(data.train, data.test, ood),
        mean,
        std,
        CPU_ACCEL,
        with_stages=with_stages,
        metadata={"epoch": "3"},
        batch_size=5,  # blocks of 5, with a short last block
        on_batch=seen.append,
    )
    assert sum(seen) == 23 + 9 + 11
    dump = load_features(path)
    assert dump.metadata["epoch"] == "3" and dump.metadata["format"] == "ncood-features"
    with torch.no_grad():
        for name, images in (
            ("train", data.train),
            ("test", data.test),
            ("ood/noise", ood["noise"]),
        ):
            features, pooled = model.forward_features(normalise(images.images, mean, std), True)
            split = dump.splits()[name]
            assert np.allclose(split.features, features.numpy(), atol=1e-5), name
            assert np.allclose(split.logits, model.fc(features).numpy(), atol=1e-5), name
            assert np.array_equal(split.labels, images.labels.numpy())
            if with_stages:
                assert set(split.layers) == set(STAGES)
                for stage in STAGES:
                    assert np.allclose(split.layers[stage], pooled[stage].numpy(), atol=1e-5)
            else:
                assert split.layers == {}
    assert np.array_equal(dump.head.weight, model.fc.weight.detach().numpy())
    assert np.array_equal(dump.head.bias, model.fc.bias.detach().numpy())
