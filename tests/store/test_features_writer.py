"""One features writer: a checkpoint dump of a trained network and the extraction of the same
network as an imported model give files of the same layout and header, and the same numbers."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch

import ncood
from ncood.datasets import normalize, synthetic_set
from ncood.engine.accel import Accel
from ncood.engine.dump import dump_features, splits_of
from ncood.engine.resnet import STAGES, ResNet18
from ncood.store.features import features_layout, load_features, save_features
from ncood.store.features_writer import FeaturesWriter
from ncood.store.run import RunDir

CPU_ACCEL = Accel(torch.device("cpu"), None, False, False)
DTYPE_NAMES = {np.dtype(np.float32): "F32", np.dtype(np.int64): "I64"}


def header(path) -> dict:
    """The safetensors header as stored: tensor entries (offsets included) and metadata."""
    with open(path, "rb") as handle:
        (size,) = struct.unpack("<Q", handle.read(8))
        return json.loads(handle.read(size))


def tensors_of(path) -> dict:
    return {name: entry for name, entry in header(path).items() if name != "__metadata__"}


def test_a_dump_and_an_imported_extraction_write_the_same_file(tmp_path):
    torch.manual_seed(0)
    data = synthetic_set(13, 7, num_classes=3)
    model = ResNet18(3, width=4).eval()
    mean, std = torch.tensor(data.mean), torch.tensor(data.std)
    noise = synthetic_set(5, 1, num_classes=2, seed=4).train
    noise.labels[:] = -1
    dumped = tmp_path / "dump.safetensors"
    dump_features(
        dumped,
        model,
        splits_of(data.train, data.test, {"noise": noise}),
        mean,
        std,
        CPU_ACCEL,
        metadata={"epoch": "3"},
        batch_size=4,
    )

    def ready(images):  # what the engine feeds the network: normalized floats
        return normalize(images.images, mean, std)

    imported = ncood.extract(
        model,
        train=(ready(data.train), data.train.labels),
        test=(ready(data.test), data.test.labels),
        ood={"noise": ready(noise)},
        out=tmp_path / "run",
        epoch=3,
        batch_size=4,
    )
    extracted = RunDir.open(imported).features(3)

    # the same tensors at the same offsets: the layout of features_layout, byte for byte
    assert tensors_of(dumped) == tensors_of(extracted)
    splits = {"train": 13, "test": 7, "ood/noise": 5}
    expected = {
        name: (DTYPE_NAMES[dtype], list(shape))
        for name, (dtype, shape) in features_layout(3, model.feature_dim, splits).items()
    }
    found = {n: (e["dtype"], e["shape"]) for n, e in tensors_of(dumped).items()}
    assert found == expected
    # one header: the format first, then what each writer adds
    for path in (dumped, extracted):
        metadata = header(path)["__metadata__"]
        assert list(metadata)[:3] == ["format", "format_version", "epoch"]
        assert metadata["format"] == "ncood-features" and metadata["epoch"] == "3"
    assert header(extracted)["__metadata__"]["source"] == "imported"
    # and the same numbers, from two code paths (fp32 both: a few ulps)
    a, b = load_features(dumped), load_features(extracted)
    for name, split in a.splits().items():
        other = b.splits()[name]
        assert np.allclose(split.features, other.features, rtol=1e-5, atol=1e-6), name
        assert np.allclose(split.logits, other.logits, rtol=1e-5, atol=1e-6), name
        assert np.array_equal(split.labels, other.labels), name
    assert np.array_equal(a.head.weight, b.head.weight)


def test_save_features_writes_the_same_tensors_and_header(tmp_path):
    """A dump held in memory (``ncood.save_features``) gets the streamed writer's tensors and
    metadata."""
    torch.manual_seed(1)
    data = synthetic_set(9, 4, num_classes=3)
    model = ResNet18(3, width=4).eval()
    streamed = tmp_path / "streamed.safetensors"
    mean, std = torch.tensor(data.mean), torch.tensor(data.std)
    splits = splits_of(data.train, data.test, {})
    dump_features(streamed, model, splits, mean, std, CPU_ACCEL, with_stages=True)
    saved = tmp_path / "saved.safetensors"
    save_features(saved, load_features(streamed))
    shapes = {n: (e["dtype"], e["shape"]) for n, e in tensors_of(streamed).items()}
    assert {n: (e["dtype"], e["shape"]) for n, e in tensors_of(saved).items()} == shapes
    assert {f"train/layers/{stage}" for stage in STAGES} <= set(shapes)
    assert header(saved)["__metadata__"] == header(streamed)["__metadata__"]


def test_the_writer_refuses_rows_outside_the_layout(tmp_path):
    path = tmp_path / "f.safetensors"
    with FeaturesWriter(path, classes=2, dim=3, splits={"train": 4, "test": 1}) as writer:
        writer.write_head(np.ones((2, 3), np.float32), np.zeros(2, np.float32))
        writer.write_rows("train", "features", 2, np.ones((2, 3), np.float32))
        with pytest.raises(ValueError):
            writer.write_rows("train", "features", 2, np.ones((3, 3), np.float32))  # past N
        with pytest.raises(ValueError):
            writer.write_rows("train", "features", 0, np.ones((1, 4), np.float32))  # not D
    assert header(path)["__metadata__"] == {"format": "ncood-features", "format_version": "1"}
