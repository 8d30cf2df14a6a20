"""Fashion-MNIST as an in-distribution set, from the publisher's four IDX files read offline:
tiny files written by the test in the exact format (gzip-compressed as distributed), in
torchvision's ``FashionMNIST/raw/`` layout or directly in a folder, and Debian's
dataset-fashion-mnist package where it is installed."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import one_line_error, train

import ncood_plugins.datasets.torchvision as torchvision_sets
from ncood.datasets import load_data
from ncood.datasets.idx import read_idx
from ncood.errors import NcoodError
from ncood.store.run import RunDir

DEBIAN = Path("/usr/share/datasets/fashion-mnist")


def write_idx_gz(path: Path, array: np.ndarray) -> None:
    """IDX: 0x00 0x00, type 0x08 (uint8), the rank, big-endian uint32 sizes, then the bytes;
    gzip-compressed, as the publisher distributes the files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = b"\0\0\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def write_fashion_mnist(folder: Path, train: int = 160, test: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (test, 28, 28)),
        "t10k-labels-idx1-ubyte": (np.arange(test) * 3) % 10,
    }
    for name, array in arrays.items():
        write_idx_gz(folder / f"{name}.gz", array)
    return arrays


@pytest.fixture
def no_system_copy(monkeypatch, tmp_path):
    monkeypatch.setattr(torchvision_sets, "FASHION_MNIST_SYSTEM", tmp_path / "not-installed")


@pytest.mark.parametrize("layout", ["FashionMNIST/raw", "."])
def test_reads_the_publishers_gz_files(tmp_path, no_system_copy, layout):
    arrays = write_fashion_mnist(tmp_path / "data" / layout)
    ind, ood = load_data("fashionmnist", ["fashionmnist"], tmp_path / "data", download=False)
    assert ind.num_classes == 10 and ind.name == "fashionmnist"
    assert ind.train.images.shape == (160, 3, 32, 32) and ind.test.images.shape == (40, 3, 32, 32)
    assert ind.train.labels.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert ind.test.labels.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    # 28×28 grey → 32×32 bilinear, the same grey in the 3 channels (the OOD loader's resize_gray)
    grey = torch.from_numpy(arrays["t10k-images-idx3-ubyte"][:1].astype(np.float32))[:, None]
    expected = torch.nn.functional.interpolate(grey, size=(32, 32), mode="bilinear")
    expected = expected.round().clamp(0, 255).to(torch.uint8)[0, 0]
    assert torch.equal(ind.test.images[0, 0], expected)
    assert torch.equal(ind.test.images[0, 2], expected)
    assert torch.equal(ood["fashionmnist"].images, ind.test.images)
    assert (ood["fashionmnist"].labels == -1).all()
    pixels = ind.train.images.double() / 255
    assert ind.mean[0] == pytest.approx(pixels.mean().item(), abs=1e-9)


def test_missing_or_damaged_files_are_one_line(tmp_path, no_system_copy):
    with pytest.raises(NcoodError) as error:
        load_data("fashionmnist", [], tmp_path, download=False)
    message = str(error.value)
    assert "FashionMNIST" in message and "dataset-fashion-mnist" in message
    assert "\n" not in message
    arrays = write_fashion_mnist(tmp_path)
    damaged = tmp_path / "t10k-images-idx3-ubyte.gz"
    header = b"\0\0\x08\x03" + struct.pack(">3I", 40, 28, 28)
    damaged.write_bytes(gzip.compress(header + b"\0" * 100))
    with pytest.raises(NcoodError, match="t10k-images-idx3-ubyte.gz holds 100 values"):
        load_data("fashionmnist", [], tmp_path, download=False)
    assert read_idx(tmp_path / "train-labels-idx1-ubyte.gz").tolist() == list(
        arrays["train-labels-idx1-ubyte"]
    )


@pytest.mark.skipif(not DEBIAN.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_debians_package_is_the_default_place(tmp_path):
    ind, _ = load_data("fashionmnist", [], tmp_path / "empty", download=False)
    assert ind.train.images.shape == (60000, 3, 32, 32)
    assert ind.test.images.shape == (10000, 3, 32, 32)
    # the published first labels: ankle boot, T-shirt, T-shirt, dress, T-shirt, pullover, …
    assert ind.train.labels[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert ind.test.labels[:5].tolist() == [9, 2, 1, 1, 6]
    assert torch.bincount(ind.train.labels).tolist() == [6000] * 10


def test_ncood_train_on_fashion_mnist_offline(tmp_path, no_system_copy):
    write_fashion_mnist(tmp_path / "data" / "FashionMNIST" / "raw")
    args = ["--dataset", "fashionmnist", "--ood", "noise", "--epochs", "2", "--no-download"]
    result = train(*args, "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    manifest = RunDir.open(tmp_path / "run").manifest()
    assert manifest["dataset"]["name"] == "fashionmnist"
    assert manifest["dataset"]["num_classes"] == 10 and manifest["dataset"]["test_size"] == 40
    result = train(*args, "--data-dir", str(tmp_path / "none"), "--out", str(tmp_path / "r2"))
    one_line_error(result, "Fashion-MNIST is not under", "dataset-fashion-mnist")
