"""A generated folder in OpenOOD v1.5's layout (what its scripts/download/download.py writes):
``benchmark_imglist/<id>/*.txt`` lists of ``relative/path label`` lines, and the images under
``images_classic/`` and ``images_largescale/``. The list names and folders are written here
from OpenOOD's evaluator (openood/evaluation_api/datasets.py), independently of ncood's table,
so that a wrong entry there fails the tests that read this folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# list file → (image folder, [(path relative to it, label), ...]) as a function of a few counts
CIFAR_OOD = {  # name in the list file → (dataset folder, size, grey)
    "tin": ("tin/test/n01443537", 64, False),
    "mnist": ("mnist/test/7", 28, True),
    "svhn": ("svhn/test/3", 32, False),
    "texture": ("texture/banded", 80, False),
    "places365": ("places365/abbey", 32, False),
}


def _image(path: Path, size: int | tuple[int, int], seed: int, grey: bool = False) -> None:
    width, height = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(height, width) if grey else (height, width, 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)


def _write_list(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


def cifar_tree(
    root: Path, name: str = "cifar100", *, per_class: int = 3, classes: int = 4, ood_count: int = 3
) -> Path:
    """OpenOOD's CIFAR-10 or CIFAR-100 benchmark: ID lists and the six OOD lists + val_tin."""
    other = "cifar10" if name == "cifar100" else "cifar100"
    classic = root / "images_classic"
    lists = root / "benchmark_imglist" / name
    seed = 0
    for split in ("train", "val", "test"):
        folder = "train" if split == "train" else "test"
        lines = []
        for label in range(classes):
            for index in range(per_class):
                rel = f"{name}/{folder}/class{label}/{split}_{index}.png"
                _image(classic / rel, 32, seed := seed + 1)
                lines.append(f"{rel} {label}")
        _write_list(lists / f"{split}_{name}.txt", lines)
    # the other CIFAR's test images, listed with their own class labels (OpenOOD sets -1)
    lines = []
    for index in range(ood_count):
        rel = f"{other}/test/class{index}/{index}.png"
        _image(classic / rel, 32, seed := seed + 1)
        lines.append(f"{rel} {index}")
    _write_list(lists / f"test_{other}.txt", lines)
    for key, (folder, size, grey) in CIFAR_OOD.items():
        lines = []
        for index in range(ood_count):
            rel = f"{folder}/{key}_{index}.{'jpg' if key == 'texture' else 'png'}"
            _image(classic / rel, size, seed := seed + 1, grey)
            lines.append(f"{rel} -1")
        _write_list(lists / f"test_{key}.txt", lines)
    lines = []
    for index in range(ood_count + 1):
        rel = f"tin/val/n01443537/val_{index}.png"
        _image(classic / rel, 64, seed := seed + 1)
        lines.append(f"{rel} -1")
    _write_list(lists / "val_tin.txt", lines)
    return root


def imagenet_tree(
    root: Path, folder: str = "imagenet", stem: str = "imagenet", *, count: int = 2
) -> Path:
    """OpenOOD's ImageNet-1K (``imagenet``) or ImageNet-200 (``imagenet200``) lists, with
    JPEGs of a few realistic shapes (not square, shorter side above 224 for some)."""
    large, classic = root / "images_largescale", root / "images_classic"
    lists = root / "benchmark_imglist" / folder
    sizes = [(300, 240), (180, 260), (500, 375)]
    seed = 100
    for split, sub in (("train", "train"), ("val", "val"), ("test", "val")):
        lines = []
        for label, wnid in enumerate(["n01440764", "n01443537"]):
            for index in range(count):
                rel = f"imagenet_1k/{sub}/{wnid}/{split}_{index}.JPEG"
                _image(large / rel, sizes[index % 3], seed := seed + 1)
                lines.append(f"{rel} {label}")
        _write_list(lists / f"{split}_{stem}.txt", lines)
    ood = {
        "ssb_hard": (large, "ssb_hard/n00000001"),
        "ninco": (large, "ninco/Bear"),
        "inaturalist": (large, "inaturalist/images"),
        "textures": (classic, "texture/banded"),
        "openimage_o": (large, "openimage_o/images"),
    }
    for key, (images, sub) in ood.items():
        lines = []
        for index in range(count):
            rel = f"{sub}/{key}_{index}.jpg"
            _image(images / rel, sizes[index % 3], seed := seed + 1)
            lines.append(f"{rel} -1")
        _write_list(lists / f"test_{key}.txt", lines)
    lines = []
    for index in range(count):
        rel = f"openimage_o/images/val_{index}.jpg"
        _image(large / rel, sizes[index % 3], seed := seed + 1)
        lines.append(f"{rel} -1")
    _write_list(lists / "val_openimage_o.txt", lines)
    return root
