"""OpenOOD v1.5's benchmarks and named sets, read from a generated folder in OpenOOD's layout
(tests/openood_layout.py): the right lists, paths, labels, groups and preprocessing, and one
line for what is missing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from openood_layout import cifar_tree, imagenet_tree
from PIL import Image

from ncood.datasets import ImageFiles, ImageSet, load_data
from ncood.datasets.openood import BENCHMARKS, Listed, benchmark_sets, named_ood, read_openood_list
from ncood.errors import NcoodError

# OpenOOD v1.5's evaluator (openood/evaluation_api/datasets.py DATA_INFO, preprocessor.py),
# typed here from its source: (near, far, validation list, pre_size, img_size, mean, std)
OPENOOD = {
    "openood:cifar10": (
        ["cifar100", "tin"],
        ["mnist", "svhn", "textures", "places365"],
        "benchmark_imglist/cifar10/val_tin.txt",
        32,
        32,
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
    ),
    "openood:cifar100": (
        ["cifar10", "tin"],
        ["mnist", "svhn", "textures", "places365"],
        "benchmark_imglist/cifar100/val_tin.txt",
        32,
        32,
        (0.5071, 0.4867, 0.4408),
        (0.2675, 0.2565, 0.2761),
    ),
    "openood:imagenet200": (
        ["ssb_hard", "ninco"],
        ["inaturalist", "textures", "openimage_o"],
        "benchmark_imglist/imagenet200/val_openimage_o.txt",
        256,
        224,
        (0.485, 0.456, 0.406),
        (0.229, 0.224, 0.225),
    ),
    "openood:imagenet1k": (
        ["ssb_hard", "ninco"],
        ["inaturalist", "textures", "openimage_o"],
        "benchmark_imglist/imagenet/val_openimage_o.txt",
        256,
        224,
        (0.485, 0.456, 0.406),
        (0.229, 0.224, 0.225),
    ),
}


def paths(files: ImageFiles) -> list[Path]:
    """The paths of a set on disk (kept as strings: ImageNet's 1.28M as ``Path`` cost 430 MiB)."""
    assert all(isinstance(p, str) for p in files.paths)
    return [Path(p) for p in files.paths]


@pytest.mark.parametrize("name", sorted(OPENOOD))
def test_each_protocol_is_openoods_evaluator(name):
    near, far, validation, resize, crop, mean, std = OPENOOD[name]
    bench = BENCHMARKS[name]
    assert bench.groups == {"near": near, "far": far}
    assert bench.validation_list.list_file == validation
    assert (bench.resize, bench.crop, bench.mean, bench.std) == (resize, crop, mean, std)
    assert bench.ood == [*near, *far, bench.validation]
    assert bench.record() == {
        "name": name,
        "groups": {"near": near, "far": far},
        "validation": bench.validation,
    }


def test_cifar100_reads_openoods_lists_as_files_on_disk(tmp_path):
    root = cifar_tree(tmp_path, "cifar100")
    bench = BENCHMARKS["openood:cifar100"]
    ind, ood = load_data("cifar100", bench.ood, root, benchmark="openood:cifar100", files=True)
    classic = root / "images_classic"
    assert isinstance(ind.train, ImageFiles) and isinstance(ind.test, ImageFiles)
    assert paths(ind.train)[:2] == [
        classic / "cifar100/train/class0/train_0.png",
        classic / "cifar100/train/class0/train_1.png",
    ]
    assert ind.train.labels.tolist() == [c for c in range(4) for _ in range(3)]
    assert paths(ind.test)[-1] == classic / "cifar100/test/class3/test_2.png"
    assert (ind.name, ind.num_classes, ind.resize, ind.crop) == ("cifar100", 100, 32, 32)
    assert (ind.mean, ind.std) == (bench.mean, bench.std)
    assert list(ood) == ["cifar10", "tin", "mnist", "svhn", "textures", "places365", "val_tin"]
    assert paths(ood["textures"])[0] == classic / "texture/banded/texture_0.jpg"
    assert paths(ood["val_tin"])[0] == classic / "tin/val/n01443537/val_0.png"
    assert len(ood["val_tin"]) == 4 and len(ood["tin"]) == 3
    # OpenOOD's evaluator sets every OOD label to -1, whatever the list says (cifar10's: 0, 1, 2)
    assert all(s.labels.tolist() == [-1] * len(s) for s in ood.values())
    assert all(p.is_file() for s in [ind.train, ind.test, *ood.values()] for p in paths(s))


@pytest.mark.parametrize(
    ("name", "folder", "stem"),
    [
        ("openood:imagenet1k", "imagenet", "imagenet"),
        ("openood:imagenet200", "imagenet200", "imagenet200"),
    ],
)
def test_imagenet_benchmarks_read_their_lists_from_both_image_folders(tmp_path, name, folder, stem):
    root = imagenet_tree(tmp_path, folder, stem)
    bench = BENCHMARKS[name]
    ind, ood = load_data(bench.dataset, bench.ood, root, benchmark=name, files=True)
    large = root / "images_largescale"
    assert paths(ind.test)[0] == large / "imagenet_1k/val/n01440764/test_0.JPEG"
    assert ind.train.labels.tolist() == [0, 0, 1, 1]
    assert (ind.num_classes, ind.resize, ind.crop) == (bench.num_classes, 256, 224)
    assert list(ood) == [
        "ssb_hard",
        "ninco",
        "inaturalist",
        "textures",
        "openimage_o",
        "val_openimage_o",
    ]
    assert paths(ood["textures"])[0] == root / "images_classic/texture/banded/textures_0.jpg"
    assert paths(ood["ninco"])[1] == large / "ninco/Bear/ninco_1.jpg"


def test_named_sets_read_the_list_of_the_runs_benchmark(tmp_path):
    cifar_tree(tmp_path, "cifar100")
    cifar_tree(tmp_path, "cifar10")
    (tmp_path / "benchmark_imglist/cifar10/test_tin.txt").write_text(
        "tin/test/n01443537/tin_0.png -1\n"
    )
    # a CIFAR-10 run reads cifar10/test_tin.txt, a CIFAR-100 run cifar100's
    assert len(named_ood("tin", tmp_path, "cifar10")) == 1
    assert len(named_ood("tin", tmp_path, "cifar100")) == 3
    # any other in-distribution set: the first benchmark that lists the set (CIFAR-10's)
    assert len(named_ood("tin", tmp_path, "synthetic")) == 1
    _, ood = load_data("synthetic", ["tin", "places365", "textures"], tmp_path, download=False)
    assert [len(s) for s in ood.values()] == [1, 3, 3]
    imagenet_tree(tmp_path)
    ssb = named_ood("ssb_hard", tmp_path, "imagenet1k")
    assert paths(ssb)[0] == tmp_path / "images_largescale/ssb_hard/n00000001/ssb_hard_0.jpg"
    # ImageNet-1K's lists (benchmark_imglist/imagenet/) for "imagenet" and any other set
    for dataset in ("imagenet", "synthetic"):
        assert (
            named_ood("ninco", tmp_path, dataset).paths
            == named_ood("ninco", tmp_path, "imagenet1k").paths
        )
    with pytest.raises(NcoodError, match="benchmark_imglist/imagenet200/test_ninco.txt"):
        named_ood("ninco", tmp_path, "imagenet200")


def test_training_reads_the_cifar_benchmark_into_memory_at_32_px(tmp_path):
    root = cifar_tree(tmp_path, "cifar100")
    bench = BENCHMARKS["openood:cifar100"]
    files, _ = load_data("cifar100", bench.ood, root, benchmark=bench.name, files=True)
    ind, ood = load_data("cifar100", bench.ood, root, benchmark=bench.name)
    assert isinstance(ind.train, ImageSet) and ind.train.images.shape == (12, 3, 32, 32)
    assert torch.equal(ind.train.labels, files.train.labels)
    assert (ind.resize, ind.crop, ind.mean) == (None, None, bench.mean)
    with Image.open(files.train.paths[5]) as image:  # 32-px PNGs are read as they are
        expected = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    assert torch.equal(ind.train.images[5], expected)
    # 64-px TinyImageNet, 28-px grey MNIST and 80-px textures all become 3×32×32
    assert {tuple(s.images.shape[1:]) for s in ood.values()} == {(3, 32, 32)}
    assert ood["mnist"].labels.tolist() == [-1, -1, -1]


def test_a_missing_list_is_one_line_naming_it_and_where(tmp_path):
    root = cifar_tree(tmp_path, "cifar100")
    (root / "benchmark_imglist/cifar100/test_places365.txt").unlink()
    with pytest.raises(NcoodError) as error:
        load_data("cifar100", ["places365"], root, benchmark="openood:cifar100")
    message = str(error.value)
    assert "benchmark_imglist/cifar100/test_places365.txt" in message
    assert str(root / "benchmark_imglist/cifar100/test_places365.txt") in message
    assert "download.py" in message and "\n" not in message


def test_a_missing_image_folder_or_image_is_one_line_naming_it(tmp_path):
    import shutil

    root = cifar_tree(tmp_path, "cifar100")
    shutil.rmtree(root / "images_classic/svhn")
    with pytest.raises(NcoodError) as error:
        load_data("cifar100", ["svhn"], root, benchmark="openood:cifar100")
    assert str(root / "images_classic/svhn/test/3/svhn_0.png") in str(error.value)
    assert "test_svhn.txt" in str(error.value) and "\n" not in str(error.value)
    missing = root / "images_classic/tin/test/n01443537/tin_1.png"
    missing.unlink()  # its folder is there: found when the image is read
    with pytest.raises(NcoodError) as error:
        load_data("cifar100", ["tin"], root, benchmark="openood:cifar100")
    assert str(missing) in str(error.value) and "\n" not in str(error.value)


def test_the_list_reader_takes_openoods_line_format(tmp_path):
    (tmp_path / "images_classic/a").mkdir(parents=True)
    lists = tmp_path / "lists.txt"
    lists.write_bytes(b"a/x.png 3\r\n\na/y.png {'label': 7}\na/z.png -1\n")
    listed = Listed("lists.txt", "images_classic")
    read = read_openood_list(tmp_path, listed, ood=False)
    assert paths(read) == [tmp_path / "images_classic/a" / n for n in ("x.png", "y.png", "z.png")]
    assert read.labels.tolist() == [3, 7, -1]
    assert read_openood_list(tmp_path, listed, ood=True).labels.tolist() == [-1, -1, -1]
    # OpenOOD's reader splits at the first space: a path with a space leaves no label
    for bad in ("a/x 1.png 3", "a/x.png", "a/x.png cat", "/abs/x.png 1", "a/x.png 1.5"):
        lists.write_text(f"a/ok.png 0\n{bad}\n")
        with pytest.raises(NcoodError, match="lists.txt, line 2: expected 'relative/path label'"):
            read_openood_list(tmp_path, listed, ood=False)


def test_a_benchmark_sets_the_sets_and_refuses_others_given_with_it():
    assert benchmark_sets("openood:cifar10", None, []) == (
        "cifar10",
        ["cifar100", "tin", "mnist", "svhn", "textures", "places365", "val_tin"],
    )
    with pytest.raises(NcoodError, match="drop --dataset and --ood"):
        benchmark_sets("openood:cifar10", "cifar10", ["svhn"])
    with pytest.raises(
        NcoodError, match=r"unknown benchmark 'openood:cifar' \(known: openood:cifar10"
    ):
        benchmark_sets("openood:cifar", None, None)
    with pytest.raises(NcoodError, match="ncood train trains on 32-px images"):
        benchmark_sets("openood:imagenet1k", None, None, training=True)
