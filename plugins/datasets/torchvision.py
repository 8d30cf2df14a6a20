"""Real datasets through torchvision: CIFAR-100/10 and Fashion-MNIST (in-distribution or OOD),
SVHN, MNIST and DTD (OOD). torchvision itself is imported only when a set is loaded; the
files' checks and the one-line errors are ncood.datasets.sources'.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import ncood
from ncood.errors import NcoodError

if TYPE_CHECKING:  # `ncood plugins` imports this module: no torch until a set is loaded
    from ncood.datasets import DataContext, ImageSet, InDistribution
    from ncood.datasets.sources import Source

# --- CIFAR. ---------------------------------------------------------------------------------


def _cifar_source(cls, label: str, train: bool) -> Source:
    from ncood.datasets.sources import Source

    def files(root: Path) -> list[tuple[Path, str | None]]:
        folder = root / cls.base_folder
        listed = [(folder / name, md5) for name, md5 in cls.train_list + cls.test_list]
        return listed + [(folder / cls.meta["filename"], cls.meta["md5"])]

    return Source(
        what=f"{label} ({'train' if train else 'test'})",
        hint=f"{cls.filename} or its extracted {cls.base_folder}/ folder",
        factory=lambda root, download: cls(root=root, train=train, download=download),
        files=files,
    )


def _cifar(context: DataContext, cls, label: str, name: str, classes: int) -> InDistribution:
    from ncood.datasets import InDistribution, channel_stats, to_image_set
    from ncood.datasets.sources import open_source

    train = open_source(_cifar_source(cls, label, True), context)
    test = open_source(_cifar_source(cls, label, False), context)
    train_set = to_image_set(train.data, train.targets)
    mean, std = channel_stats(train_set.images)
    return InDistribution(
        name, train_set, to_image_set(test.data, test.targets), classes, mean, std
    )


def load_cifar100(context: DataContext) -> InDistribution:
    """CIFAR-100: 50,000 train / 10,000 test 32×32 colour images, 100 classes."""
    from torchvision.datasets import CIFAR100

    return _cifar(context, CIFAR100, "CIFAR-100", "cifar100", 100)


def load_cifar10(context: DataContext) -> InDistribution:
    """CIFAR-10: 50,000 train / 10,000 test 32×32 colour images, 10 classes."""
    from torchvision.datasets import CIFAR10

    return _cifar(context, CIFAR10, "CIFAR-10", "cifar10", 10)


def _cifar_test_as_ood(context: DataContext, cls, label: str) -> ImageSet:
    import numpy as np
    import torch

    from ncood.datasets import ood_set
    from ncood.datasets.sources import open_source

    test = open_source(_cifar_source(cls, label, False), context)
    return ood_set(torch.from_numpy(np.ascontiguousarray(test.data)).permute(0, 3, 1, 2))


def load_cifar10_ood(context: DataContext, ind: InDistribution) -> ImageSet:
    """CIFAR-10's 10,000 test images (near-OOD for CIFAR-100)."""
    from torchvision.datasets import CIFAR10

    return _cifar_test_as_ood(context, CIFAR10, "CIFAR-10")


def load_cifar100_ood(context: DataContext, ind: InDistribution) -> ImageSet:
    """CIFAR-100's 10,000 test images (near-OOD for CIFAR-10)."""
    from torchvision.datasets import CIFAR100

    return _cifar_test_as_ood(context, CIFAR100, "CIFAR-100")


# --- SVHN. ----------------------------------------------------------------------------------


def load_svhn_test(context: DataContext, ind: InDistribution) -> ImageSet:
    """SVHN's 26,032 test digits (the TP's OOD set)."""
    import numpy as np
    import torch
    from torchvision.datasets import SVHN

    from ncood.datasets import ood_set
    from ncood.datasets.sources import Source, open_source

    def files(root: Path) -> list[tuple[Path, str | None]]:
        _, filename, md5 = SVHN.split_list["test"]
        return [(root / filename, md5)]

    source = Source(
        what="SVHN (test split)",
        hint=SVHN.split_list["test"][1],
        factory=lambda root, download: SVHN(root=root, split="test", download=download),
        files=files,
    )
    svhn = open_source(source, context)
    return ood_set(torch.from_numpy(np.ascontiguousarray(svhn.data)))  # already N×3×32×32


# --- MNIST and Fashion-MNIST (grey 28×28, resized to 32×32 and repeated to 3 channels). ----------


def _mnist_like(context: DataContext, cls, label: str) -> ImageSet:
    """torchvision wants all four raw files, even to read the test split only."""
    from ncood.datasets import ood_set, resize_gray
    from ncood.datasets.sources import Source, open_source

    def files(root: Path) -> list[tuple[Path, str | None]]:
        raw = root / cls.__name__ / "raw"
        return [(raw / Path(name).stem, None) for name, _ in cls.resources]

    source = Source(
        what=f"{label} (test split)",
        hint=f"the four {cls.__name__}/raw/*-idx?-ubyte files (or their .gz)",
        factory=lambda root, download: cls(root=root, train=False, download=download),
        files=files,
    )
    dataset = open_source(source, context)
    return ood_set(resize_gray(dataset.data))


def load_mnist(context: DataContext, ind: InDistribution) -> ImageSet:
    """MNIST's 10,000 test digits (far-OOD)."""
    from torchvision.datasets import MNIST

    return _mnist_like(context, MNIST, "MNIST")


# Where Debian's dataset-fashion-mnist package puts the publisher's four files
FASHION_MNIST_SYSTEM = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _fashion_mnist(context: DataContext, split: str) -> ImageSet:
    """One split of Fashion-MNIST from the publisher's IDX files (``.gz`` as distributed, or
    extracted): in torchvision's ``FashionMNIST/raw/`` under the data folder, the data folder
    itself, or Debian's /usr/share/datasets/fashion-mnist; else torchvision downloads them
    when allowed. 28×28 grey → 32×32, repeated to 3 channels."""
    import torch

    from ncood.datasets import ImageSet, resize_gray
    from ncood.datasets.idx import find_idx, read_idx

    names = [name for pair in FASHION_MNIST_FILES.values() for name in pair]
    folders = [context.root / "FashionMNIST" / "raw", context.root, FASHION_MNIST_SYSTEM]
    found = find_idx(folders, names)
    if found is None and not context.download:
        raise NcoodError(
            f"Fashion-MNIST is not under {context.root} and downloading is off (--no-download): "
            f"put the four *-idx?-ubyte.gz files in {folders[0]} (or {context.root}), or "
            f"install Debian's dataset-fashion-mnist ({FASHION_MNIST_SYSTEM})"
        )
    if found is None:
        from torchvision.datasets import FashionMNIST

        _mnist_like(context, FashionMNIST, "Fashion-MNIST")  # downloads, or says what to put where
        found = find_idx(folders[:1], names)
    images_name, labels_name = FASHION_MNIST_FILES[split]
    images, labels = read_idx(found[images_name]), read_idx(found[labels_name])
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise NcoodError(
            f"{found[images_name]} ({images.shape}) and {found[labels_name]} ({labels.shape}) "
            f"are not N×28×28 images and their N labels"
        )
    gray = torch.from_numpy(images.copy())
    return ImageSet(resize_gray(gray), torch.from_numpy(labels.astype("int64")))


def load_fashion_mnist_ind(context: DataContext) -> InDistribution:
    """Fashion-MNIST: 60,000 train / 10,000 test 28×28 grey images, 10 classes (32×32×3)."""
    from ncood.datasets import InDistribution, channel_stats

    train, test = _fashion_mnist(context, "train"), _fashion_mnist(context, "test")
    (mean,), (std,) = channel_stats(train.images[:, :1])  # the 3 channels are one grey
    return InDistribution("fashionmnist", train, test, 10, (mean,) * 3, (std,) * 3)


def load_fashion_mnist(context: DataContext, ind: InDistribution) -> ImageSet:
    """Fashion-MNIST's 10,000 test images (far-OOD)."""
    from ncood.datasets import ood_set

    return ood_set(_fashion_mnist(context, "test").images)


# --- DTD (Describable Textures), the "Textures" OOD set of the literature. ----------------------


def load_dtd(context: DataContext, ind: InDistribution) -> ImageSet:
    """DTD's test split (partition 1), resized and centre-cropped to 32×32."""
    from torchvision.datasets import DTD

    from ncood.datasets.image_folder import load_image_files
    from ncood.datasets.sources import Source, open_source

    source = Source(
        what="DTD (textures, test split)",
        hint="dtd-r1.0.1.tar.gz extracted as dtd/dtd/ (with images/ and labels/)",
        factory=lambda root, download: DTD(root=root, split="test", download=download),
        files=lambda root: [(root / "dtd" / "dtd" / "labels" / "test1.txt", None)],
    )
    dtd = open_source(source, context)
    return load_image_files(list(dtd._image_files), show_progress=context.show_progress)


@ncood.hookimpl
def register_datasets(register):
    register(
        "cifar100",
        load_cifar100,
        "CIFAR-100 (100 classes); as OOD, its test images",
        ood=load_cifar100_ood,
    )
    register(
        "cifar10",
        load_cifar10,
        "CIFAR-10 (10 classes); as OOD, its test images",
        ood=load_cifar10_ood,
    )
    register("svhn", ood=load_svhn_test, description="SVHN's test digits")
    register("mnist", ood=load_mnist, description="MNIST's test digits")
    register(
        "fashionmnist",
        load_fashion_mnist_ind,
        "Fashion-MNIST (10 classes, grey → 32×32×3); as OOD, its test images",
        ood=load_fashion_mnist,
    )
    register("dtd", ood=load_dtd, description="DTD's textures (test split 1)")
