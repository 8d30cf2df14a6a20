"""Real datasets through torchvision: CIFAR-100/10 (in-distribution or OOD), SVHN, MNIST,
Fashion-MNIST and DTD (OOD). torchvision itself is imported only when a set is loaded; the
files' checks and the one-line errors are ncood.datasets.sources'.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import ncood

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


def load_fashion_mnist(context: DataContext, ind: InDistribution) -> ImageSet:
    """Fashion-MNIST's 10,000 test images (far-OOD)."""
    from torchvision.datasets import FashionMNIST

    return _mnist_like(context, FashionMNIST, "Fashion-MNIST")


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
    register("fashionmnist", ood=load_fashion_mnist, description="Fashion-MNIST's test images")
    register("dtd", ood=load_dtd, description="DTD's textures (test split 1)")
