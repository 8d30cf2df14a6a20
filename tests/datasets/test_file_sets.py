"""The readers of image sets left on disk (ncood/datasets/files.py), on layouts written by the
tests: OpenOOD's image lists, ImageFolder trees (compared with torchvision's ImageFolder), and
ILSVRC-2012 as its archives extract (flat val/ labelled by the devkit's files, as distributed)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ncood
from ncood.datasets import ImageFiles, ImageSet, InDistribution, load_data
from ncood.datasets.digest import image_digest
from ncood.datasets.files import (
    read_ilsvrc2012,
    read_image_folder,
    read_image_list,
    read_split_folders,
)
from ncood.errors import NcoodError


def write_image(path: Path, size=(40, 30), colour=(10, 20, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def test_image_list_as_openood_writes_it(tmp_path):
    write_image(tmp_path / "images_classic" / "tin" / "a.JPEG")
    write_image(tmp_path / "images_classic" / "tin" / "b.png")
    write_image(tmp_path / "images_classic" / "tin" / "d.png")
    listing = tmp_path / "benchmark_imglist" / "cifar10" / "test_tin.txt"
    listing.parent.mkdir(parents=True)
    listing.write_text(
        "images_classic/tin/a.JPEG 3\n\nimages_classic/tin/b.png -1\nimages_classic/tin/d.png 0\n"
    )
    files = read_image_list(listing, tmp_path)
    assert [Path(p) for p in files.paths] == [
        tmp_path / "images_classic" / "tin" / "a.JPEG",
        tmp_path / "images_classic" / "tin" / "b.png",
        tmp_path / "images_classic" / "tin" / "d.png",
    ]
    assert files.labels.tolist() == [3, -1, 0]
    assert files.labels.dtype == torch.int64
    assert read_image_list(listing, tmp_path, ood=True).labels.tolist() == [-1, -1, -1]


def test_image_list_missing_list_or_image_names_it(tmp_path):
    with pytest.raises(NcoodError, match="image list not found: .*nowhere.txt"):
        read_image_list(tmp_path / "nowhere.txt", tmp_path)
    listing = tmp_path / "list.txt"
    listing.write_text("images/gone.png 0\n")
    with pytest.raises(NcoodError) as error:
        read_image_list(listing, tmp_path / "root")
    message = str(error.value)
    assert "line 1" in message and str(tmp_path / "root" / "images" / "gone.png") in message


def test_image_folder_matches_torchvision(tmp_path):
    from torchvision.datasets import ImageFolder

    for name in ("b.jpg", "a.png", "deep/c.png"):
        write_image(tmp_path / "zebra" / name)
    write_image(tmp_path / "ant" / "x.jpeg")
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    files = read_image_folder(tmp_path)
    peer = ImageFolder(str(tmp_path))
    assert [str(p) for p in files.paths] == [path for path, _ in peer.samples]
    assert files.labels.tolist() == [label for _, label in peer.samples] == [0, 1, 1, 1]


def test_image_folder_with_train_classes_refuses_a_foreign_one(tmp_path):
    write_image(tmp_path / "test" / "cat" / "1.png")
    write_image(tmp_path / "test" / "dog" / "1.png")
    files = read_image_folder(tmp_path / "test", ["ant", "cat", "dog"])
    assert files.labels.tolist() == [1, 2]
    with pytest.raises(NcoodError, match="class folder 'dog'"):
        read_image_folder(tmp_path / "test", ["ant", "cat"])
    with pytest.raises(NcoodError, match="image folder not found"):
        read_image_folder(tmp_path / "missing")


def test_split_folders_as_in_distribution(tmp_path):
    for split in ("train", "test"):
        for name in ("cat", "dog"):
            write_image(tmp_path / split / name / "1.png")
    ind = read_split_folders(tmp_path, "pets")
    assert isinstance(ind.train, ImageFiles) and isinstance(ind.test, ImageFiles)
    assert ind.num_classes == 2 and (ind.resize, ind.crop) == (256, 224)
    assert ind.test.labels.tolist() == [0, 1]
    with pytest.raises(NcoodError, match="needs .*train/ and .*val/"):
        read_split_folders(tmp_path / "train", "x")


def devkit_bytes(wnids_by_id: dict[int, str], truth: list[int]) -> tuple[bytes, bytes]:
    """The devkit's meta.mat (its synsets struct: ILSVRC2012_ID, WNID, num_children, …; one
    non-leaf synset as in the real file) and its ground truth, one ILSVRC2012_ID a line."""
    from scipy.io import savemat

    dtype = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")]
    rows = [(i, w, w, 0) for i, w in wnids_by_id.items()] + [(1001, "n00001740", "entity", 3)]
    synsets = np.array(rows, dtype=dtype)
    buffer = io.BytesIO()
    savemat(buffer, {"synsets": synsets})
    return "\n".join(str(i) for i in truth).encode() + b"\n", buffer.getvalue()


def add_to_tar(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_ilsvrc2012_flat_val_labelled_by_the_devkit_archive(tmp_path):
    # the devkit numbers classes in its own order; labels are the sorted WordNet ids' order
    wnids_by_id = {1: "n03000000", 2: "n01000000", 3: "n02000000"}
    for wnid in wnids_by_id.values():
        write_image(tmp_path / "train" / wnid / f"{wnid}_1.JPEG")
    truth = [1, 3, 2, 1]
    for number in range(1, len(truth) + 1):
        write_image(tmp_path / "val" / f"ILSVRC2012_val_{number:08d}.JPEG")
    text, meta = devkit_bytes(wnids_by_id, truth)
    with tarfile.open(tmp_path / "ILSVRC2012_devkit_t12.tar.gz", "w:gz") as tar:
        add_to_tar(tar, "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt", text)
        add_to_tar(tar, "ILSVRC2012_devkit_t12/data/meta.mat", meta)
    train, val, classes = read_ilsvrc2012(tmp_path)
    assert classes == ["n01000000", "n02000000", "n03000000"]
    assert train.labels.tolist() == [0, 1, 2]
    assert [p.name for p in val.paths][0] == "ILSVRC2012_val_00000001.JPEG"
    # ID 1 → n03000000 (label 2), 3 → n02000000 (1), 2 → n01000000 (0)
    assert val.labels.tolist() == [2, 1, 0, 2]
    ind = read_split_folders(tmp_path, "imagenet")
    assert ind.test.labels.tolist() == [2, 1, 0, 2] and ind.num_classes == 3


def test_ilsvrc2012_val_in_class_folders_and_what_is_missing(tmp_path):
    write_image(tmp_path / "train" / "n02000000" / "a.JPEG")
    write_image(tmp_path / "train" / "n01000000" / "b.JPEG")
    write_image(tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG")
    with pytest.raises(NcoodError, match="put ILSVRC2012_devkit_t12.tar.gz"):
        read_ilsvrc2012(tmp_path)
    (tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG").unlink()
    write_image(tmp_path / "val" / "n02000000" / "ILSVRC2012_val_00000001.JPEG")
    _, val, _ = read_ilsvrc2012(tmp_path)  # torchvision's arrangement of val
    assert val.labels.tolist() == [1]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "ILSVRC2012_img_train.tar").write_bytes(b"")
    with pytest.raises(NcoodError, match="extract ILSVRC2012_img_train.tar into"):
        read_ilsvrc2012(empty)


def test_folder_dataset_only_at_its_own_resolution(tmp_path):
    for split in ("train", "val"):
        write_image(tmp_path / "set" / split / "a" / "1.png")
        write_image(tmp_path / "set" / split / "b" / "1.png")
    write_image(tmp_path / "ood" / "x.png", size=(300, 200))
    spec = f"folder:{tmp_path / 'set'}"
    ind, ood = load_data(spec, [f"folder:{tmp_path / 'ood'}"], None, files=True)
    assert isinstance(ind.train, ImageFiles) and isinstance(ood["ood"], ImageFiles)
    assert ood["ood"].labels.tolist() == [-1]
    with pytest.raises(NcoodError, match="ncood extract"):
        load_data(spec, [], None)
    _, ood = load_data("digits", [f"folder:{tmp_path / 'ood'}"], None)  # ncood train's
    assert isinstance(ood["ood"], ImageSet) and ood["ood"].images.shape == (1, 3, 32, 32)


def test_files_digest_follows_the_files(tmp_path):
    write_image(tmp_path / "a" / "1.png")
    write_image(tmp_path / "b" / "1.png")
    before = image_digest(read_image_folder(tmp_path))
    assert image_digest(read_image_folder(tmp_path)) == before
    write_image(tmp_path / "b" / "1.png", size=(80, 60))  # other pixels, other size
    assert image_digest(read_image_folder(tmp_path)) != before


class ListPlugin:
    """A dataset plugin whose sets are image lists (as OpenOOD's benchmarks are)."""

    def __init__(self, root: Path):
        self.root = root

    @ncood.hookimpl
    def register_datasets(self, register):
        def load(context):
            files = read_image_list(self.root / "train.txt", self.root)
            mean, std = (0.5,) * 3, (0.25,) * 3
            return InDistribution("listed", files, files, 2, mean, std, resize=40, crop=32)

        def ood(context, ind):
            return read_image_list(self.root / "ood.txt", self.root)

        register("listed", load, "listed images", ood=ood)


def test_plugin_sets_on_disk_stay_there_or_come_in_memory(plugin_host, tmp_path):
    write_image(tmp_path / "img" / "a.png", size=(64, 48), colour=(255, 0, 0))
    write_image(tmp_path / "img" / "b.png", size=(50, 90), colour=(0, 0, 255))
    (tmp_path / "train.txt").write_text("img/a.png 0\nimg/b.png 1\n")
    (tmp_path / "ood.txt").write_text("img/b.png -1\n")
    plugin_host(ListPlugin(tmp_path), "listed-test-plugin")
    ind, ood = load_data("listed", ["listed"], tmp_path, files=True)
    assert isinstance(ind.train, ImageFiles) and isinstance(ood["listed"], ImageFiles)
    assert (ind.resize, ind.crop) == (40, 32)
    ind, ood = load_data("listed", ["listed"], tmp_path)  # ncood train: 32 px in memory
    assert isinstance(ind.train, ImageSet) and ind.train.images.shape == (2, 3, 32, 32)
    assert ind.train.labels.tolist() == [0, 1]
    assert ind.train.images[0, :, 16, 16].tolist() == [255, 0, 0]
    assert ind.mean[0] == pytest.approx(0.5, abs=1e-6)  # its own statistics: half red pixels
    assert ood["listed"].images[0, :, 16, 16].tolist() == [0, 0, 255]
    assert ood["listed"].labels.tolist() == [-1]
