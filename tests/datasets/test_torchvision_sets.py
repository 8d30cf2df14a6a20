"""The real dataset loaders, offline, on tiny files written in each dataset's published format.

torchvision verifies CIFAR's and SVHN's published md5 sums before it reads anything. The tiny
files cannot have those sums, so each test sets the *expected* sums (the class attributes
torchvision reads, ``train_list``/``test_list``/``meta``/``split_list``) to those of the files
it wrote, with ``monkeypatch``: the whole reading path then runs as it would on the real files,
integrity check included, and a file changed afterwards is caught as corrupt.
"""

from __future__ import annotations

import hashlib
import pickle
import struct
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from ncood.cli import app
from ncood.datasets import load_data, ood_name
from ncood.errors import NcoodError

runner = CliRunner()


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def cifar_pixels(count: int, seed: int) -> np.ndarray:
    """count×3072 uint8 rows, CIFAR's layout: all red, then all green, then all blue."""
    return np.random.default_rng(seed).integers(0, 256, (count, 3072), dtype=np.uint8)


def write_pickle(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=2)  # the dataset's own format, written by the test


@pytest.fixture
def offline(monkeypatch):
    """No network, whatever the machine: every URL open fails like an unplugged cable."""

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.fixture
def cifar100_files(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR100

    folder = tmp_path / "cifar-100-python"
    train = {"data": cifar_pixels(20, 0), "fine_labels": [i % 5 for i in range(20)]}
    test = {"data": cifar_pixels(10, 1), "fine_labels": [(i + 2) % 5 for i in range(10)]}
    write_pickle(folder / "train", train)
    write_pickle(folder / "test", test)
    write_pickle(folder / "meta", {"fine_label_names": [f"class{i}" for i in range(100)]})
    monkeypatch.setattr(CIFAR100, "train_list", [["train", md5(folder / "train")]])
    monkeypatch.setattr(CIFAR100, "test_list", [["test", md5(folder / "test")]])
    monkeypatch.setattr(
        CIFAR100,
        "meta",
        {"filename": "meta", "key": "fine_label_names", "md5": md5(folder / "meta")},
    )
    return tmp_path, train, test


def test_cifar100_is_read_in_its_real_format(cifar100_files, offline):
    root, train, test = cifar100_files
    ind, ood = load_data("cifar100", ["noise"], root, download=False)
    assert ind.name == "cifar100" and ind.num_classes == 100
    assert ind.train.images.shape == (20, 3, 32, 32) and ind.train.images.dtype == torch.uint8
    # Row r of the pickle is image r: channel c is bytes [1024c, 1024(c+1)), row-major 32×32.
    expected = torch.from_numpy(train["data"].reshape(20, 3, 32, 32))
    assert torch.equal(ind.train.images, expected)
    assert ind.train.labels.tolist() == train["fine_labels"]
    assert ind.test.labels.tolist() == test["fine_labels"]
    pixels = train["data"].reshape(20, 3, -1).astype(np.float64) / 255
    assert np.allclose(ind.mean, pixels.transpose(1, 0, 2).reshape(3, -1).mean(1))
    assert np.allclose(ind.std, pixels.transpose(1, 0, 2).reshape(3, -1).std(1, ddof=1))
    assert len(ood["noise"]) == 10


def test_cifar100_test_split_as_ood(cifar100_files):
    root, _, test = cifar100_files
    _, ood = load_data("digits", ["cifar100"], root, download=False)
    assert torch.equal(
        ood["cifar100"].images, torch.from_numpy(test["data"].reshape(10, 3, 32, 32))
    )
    assert (ood["cifar100"].labels == -1).all()


def test_corrupt_cifar_file_is_named(cifar100_files):
    root, _, _ = cifar100_files
    with open(root / "cifar-100-python" / "train", "r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00\x01\x02")
    with pytest.raises(NcoodError, match=r"cifar-100-python/train is corrupt \(checksum"):
        load_data("cifar100", ["noise"], root, download=False)


def test_unreadable_file_with_the_right_checksum(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR100

    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name in ("train", "test", "meta"):
        (folder / name).write_bytes(b"not a pickle")
    digest = md5(folder / "train")
    monkeypatch.setattr(CIFAR100, "train_list", [["train", digest]])
    monkeypatch.setattr(CIFAR100, "test_list", [["test", digest]])
    monkeypatch.setattr(
        CIFAR100, "meta", {"filename": "meta", "key": "fine_label_names", "md5": digest}
    )
    with pytest.raises(NcoodError, match="could not read CIFAR-100 .* damaged"):
        load_data("cifar100", ["noise"], tmp_path, download=False)


def test_cifar10_in_its_real_format(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    folder = tmp_path / "cifar-10-batches-py"
    batches = {f"data_batch_{i}": cifar_pixels(4, i) for i in range(1, 6)}
    batches["test_batch"] = cifar_pixels(6, 9)
    for name, data in batches.items():
        write_pickle(folder / name, {"data": data, "labels": [i % 10 for i in range(len(data))]})
    write_pickle(folder / "batches.meta", {"label_names": [f"c{i}" for i in range(10)]})
    monkeypatch.setattr(
        CIFAR10,
        "train_list",
        [[f"data_batch_{i}", md5(folder / f"data_batch_{i}")] for i in range(1, 6)],
    )
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5(folder / "test_batch")]])
    monkeypatch.setattr(
        CIFAR10,
        "meta",
        {"filename": "batches.meta", "key": "label_names", "md5": md5(folder / "batches.meta")},
    )
    ind, ood = load_data("cifar10", ["cifar10"], tmp_path, download=False)
    assert len(ind.train) == 20 and ind.num_classes == 10
    stacked = np.concatenate([batches[f"data_batch_{i}"] for i in range(1, 6)])
    assert torch.equal(ind.train.images, torch.from_numpy(stacked.reshape(20, 3, 32, 32)))
    assert torch.equal(ood["cifar10"].images, ind.test.images)


def test_svhn_test_split_from_its_mat_file(tmp_path, monkeypatch):
    from scipy.io import savemat
    from torchvision.datasets import SVHN

    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (32, 32, 3, 7), dtype=np.uint8)  # SVHN's H×W×C×N
    y = np.array([[10], [1], [2], [3], [4], [5], [6]], dtype=np.uint8)
    savemat(tmp_path / "test_32x32.mat", {"X": x, "y": y})
    url, filename, _ = SVHN.split_list["test"]
    monkeypatch.setitem(SVHN.split_list, "test", [url, filename, md5(tmp_path / filename)])
    _, ood = load_data("digits", ["svhn"], tmp_path, download=False)
    images = ood["svhn"].images
    assert images.shape == (7, 3, 32, 32)
    # image n, channel c, row i, column j is X[i, j, c, n]
    assert images[4, 2, 5, 9] == x[5, 9, 2, 4]
    assert torch.equal(images, torch.from_numpy(x).permute(3, 2, 0, 1))
    assert (ood["svhn"].labels == -1).all()


def write_idx(path: Path, array: np.ndarray) -> None:
    """MNIST's IDX format: magic (0x08 = uint8, then the rank), big-endian sizes, the bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashionmnist", "FashionMNIST")])
def test_mnist_like_test_split_from_idx_files(tmp_path, name, folder):
    digits = np.zeros((3, 28, 28), dtype=np.uint8)
    digits[0] = 255  # all white
    digits[1, :, :14] = 200  # left half grey
    write_idx(tmp_path / folder / "raw" / "t10k-images-idx3-ubyte", digits)
    write_idx(tmp_path / folder / "raw" / "t10k-labels-idx1-ubyte", np.array([7, 2, 1]))
    write_idx(tmp_path / folder / "raw" / "train-images-idx3-ubyte", digits[:1])
    write_idx(tmp_path / folder / "raw" / "train-labels-idx1-ubyte", np.array([0]))
    _, ood = load_data("digits", [name], tmp_path, download=False)
    images = ood[name].images
    assert images.shape == (3, 3, 32, 32)
    assert (images[0] == 255).all() and (images[2] == 0).all()
    assert torch.equal(images[1, 0], images[1, 2])  # grey repeated to 3 channels
    assert (images[1, :, :, :15] == 200).all() and (images[1, :, :, 17:] == 0).all()


def write_png(path: Path, size: tuple[int, int], colour, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)


def test_dtd_test_split(tmp_path):
    base = tmp_path / "dtd" / "dtd"
    write_png(base / "images" / "banded" / "banded_0001.jpg", (300, 200), (255, 0, 0))
    write_png(base / "images" / "dotted" / "dotted_0001.jpg", (64, 64), (0, 0, 255))
    (base / "labels").mkdir(parents=True)
    (base / "labels" / "test1.txt").write_text("banded/banded_0001.jpg\ndotted/dotted_0001.jpg\n")
    _, ood = load_data("digits", ["dtd"], tmp_path, download=False)
    images = ood["dtd"].images.int()
    assert images.shape == (2, 3, 32, 32)
    assert (images[0, 0] > 240).all() and (images[0, 2] < 15).all()  # JPEG is lossy
    assert (images[1, 2] > 240).all() and (images[1, 0] < 15).all()


def test_image_folder_any_size_and_mode(tmp_path):
    folder = tmp_path / "my textures"
    write_png(folder / "a.png", (64, 32), (10, 20, 30))
    write_png(folder / "sub" / "b.png", (20, 50), 128, mode="L")
    write_png(folder / "c.bmp", (32, 32), (0, 255, 0, 255), mode="RGBA")
    (folder / "notes.txt").write_text("not an image, ignored")
    spec = f"folder:{folder}"
    _, ood = load_data("digits", [spec], None, download=False)
    assert ood_name(spec) == "my-textures"
    images = ood["my-textures"].images
    assert images.shape == (3, 3, 32, 32)  # sorted paths: a.png, c.bmp, sub/b.png
    assert images[0, :, 0, 0].tolist() == [10, 20, 30]
    assert images[1, :, 16, 16].tolist() == [0, 255, 0]
    assert images[2, :, 16, 16].tolist() == [128, 128, 128]


def test_image_folder_errors(tmp_path):
    with pytest.raises(NcoodError, match="OOD image folder not found"):
        load_data("digits", [f"folder:{tmp_path / 'missing'}"], None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(NcoodError, match="no images"):
        load_data("digits", [f"folder:{tmp_path / 'empty'}"], None)
    broken = tmp_path / "broken"
    write_png(broken / "good.png", (32, 32), (1, 2, 3))
    (broken / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(NcoodError, match="could not read image .*bad.png"):
        load_data("digits", [f"folder:{broken}"], None)


def test_missing_dataset_without_network_is_one_line(tmp_path, offline):
    result = runner.invoke(
        app,
        [
            "train",
            "--preset",
            "tp-200",
            "--out",
            str(tmp_path / "run"),
            "--data-dir",
            str(tmp_path / "none"),
        ],
    )
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert "CIFAR-100 (train) is not under" in lines[0]
    assert "could not be downloaded" in lines[0]
    assert "cifar-100-python.tar.gz or its extracted cifar-100-python/ folder" in lines[0]
    assert not (tmp_path / "run").exists()  # nothing left behind by a run that never started


def test_missing_ood_set_says_which_file(tmp_path, cifar100_files, offline):
    root, _, _ = cifar100_files
    with pytest.raises(NcoodError, match=r"SVHN \(test split\) .* put test_32x32.mat in"):
        load_data("cifar100", ["svhn"], root)
    with pytest.raises(NcoodError, match=r"downloading is off \(--no-download\)"):
        load_data("cifar100", ["svhn"], root, download=False)


def test_unknown_names_fail_before_anything_is_read(tmp_path):
    for args, message in (
        (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
        (["--ood", "svhn,places"], "unknown OOD dataset 'places'"),
        (["--ood", "folder:"], "folder: needs a path"),
    ):
        result = runner.invoke(
            app, ["train", "--preset", "tp-200", "--out", str(tmp_path / "r"), "--dry-run", *args]
        )
        assert result.exit_code == 1 and message in result.output, result.output
        assert "Traceback" not in result.output
