"""Real datasets through torchvision: CIFAR-100/10 (in-distribution or OOD), SVHN, MNIST,
Fashion-MNIST and DTD (OOD).

torchvision reads each dataset in its published on-disk format and checks the published
checksums; this module adds what a user needs around it: one clear line when the files are
missing (naming what to put where), corrupt (naming the file) or unreadable, and a download
attempt, with a timeout, only when it is allowed.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ncood.datasets.base import (
    IN_DISTRIBUTION,
    OUT_OF_DISTRIBUTION,
    DataContext,
    ImageSet,
    InDistribution,
    channel_stats,
    ood_set,
    resize_gray,
    to_image_set,
)
from ncood.datasets.image_folder import load_image_files
from ncood.errors import NcoodError

DOWNLOAD_TIMEOUT_S = 30


@dataclass(frozen=True)
class Source:
    """One torchvision dataset split and the files it needs under the data folder."""

    what: str  # "CIFAR-100 (train)"
    hint: str  # what to put in the data folder
    factory: Callable[[str, bool], Any]  # (root, download) → torchvision dataset
    files: Callable[[Path], list[tuple[Path, str | None]]]  # expected files, md5 or None


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def open_source(source: Source, context: DataContext) -> Any:
    """The torchvision dataset, or one :class:`NcoodError` line saying how to get it."""
    from torchvision.datasets.utils import check_integrity

    root = context.root
    try:
        return source.factory(str(root), False)
    except Exception as exc:  # torchvision raises RuntimeError, but a bad file can raise anything
        first_error = exc
    expected = source.files(root)
    corrupt = [p for p, md5 in expected if p.is_file() and md5 and not check_integrity(p, md5)]
    if corrupt:
        raise NcoodError(
            f"{source.what}: {corrupt[0]} is corrupt (checksum mismatch); delete it and "
            f"download again, or replace it with the published file"
        )
    if expected and all(p.is_file() for p, _ in expected):
        raise NcoodError(
            f"could not read {source.what} from {root} ({_one_line(first_error)}); "
            f"the files may be damaged: replace them with the published ones"
        )
    if context.download:
        try:
            with _socket_timeout(DOWNLOAD_TIMEOUT_S):
                return source.factory(str(root), True)
        except Exception:
            reason = "and could not be downloaded (no network?)"
    else:
        reason = "and downloading is off (--no-download)"
    raise NcoodError(
        f"{source.what} is not under {root} {reason}: put {source.hint} in {root}, "
        f"or pass --data-dir DIR"
    )


# --- CIFAR. ---------------------------------------------------------------------------------


def _cifar_source(cls, label: str, train: bool) -> Source:
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
    train = open_source(_cifar_source(cls, label, True), context)
    test = open_source(_cifar_source(cls, label, False), context)
    train_set = to_image_set(train.data, train.targets)
    mean, std = channel_stats(train_set.images)
    return InDistribution(
        name, train_set, to_image_set(test.data, test.targets), classes, mean, std
    )


@IN_DISTRIBUTION.decorator("cifar100")
def load_cifar100(context: DataContext) -> InDistribution:
    """CIFAR-100: 50,000 train / 10,000 test 32×32 colour images, 100 classes."""
    from torchvision.datasets import CIFAR100

    return _cifar(context, CIFAR100, "CIFAR-100", "cifar100", 100)


@IN_DISTRIBUTION.decorator("cifar10")
def load_cifar10(context: DataContext) -> InDistribution:
    """CIFAR-10: 50,000 train / 10,000 test 32×32 colour images, 10 classes."""
    from torchvision.datasets import CIFAR10

    return _cifar(context, CIFAR10, "CIFAR-10", "cifar10", 10)


def _cifar_test_as_ood(context: DataContext, cls, label: str) -> ImageSet:
    test = open_source(_cifar_source(cls, label, False), context)
    return ood_set(torch.from_numpy(np.ascontiguousarray(test.data)).permute(0, 3, 1, 2))


@OUT_OF_DISTRIBUTION.decorator("cifar10")
def load_cifar10_ood(context: DataContext, ind: InDistribution) -> ImageSet:
    """CIFAR-10's 10,000 test images (near-OOD for CIFAR-100)."""
    from torchvision.datasets import CIFAR10

    return _cifar_test_as_ood(context, CIFAR10, "CIFAR-10")


@OUT_OF_DISTRIBUTION.decorator("cifar100")
def load_cifar100_ood(context: DataContext, ind: InDistribution) -> ImageSet:
    """CIFAR-100's 10,000 test images (near-OOD for CIFAR-10)."""
    from torchvision.datasets import CIFAR100

    return _cifar_test_as_ood(context, CIFAR100, "CIFAR-100")


# --- SVHN. ----------------------------------------------------------------------------------


@OUT_OF_DISTRIBUTION.decorator("svhn")
def load_svhn_test(context: DataContext, ind: InDistribution) -> ImageSet:
    """SVHN's 26,032 test digits (the TP's OOD set)."""
    from torchvision.datasets import SVHN

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


@OUT_OF_DISTRIBUTION.decorator("mnist")
def load_mnist(context: DataContext, ind: InDistribution) -> ImageSet:
    """MNIST's 10,000 test digits (far-OOD)."""
    from torchvision.datasets import MNIST

    return _mnist_like(context, MNIST, "MNIST")


@OUT_OF_DISTRIBUTION.decorator("fashionmnist")
def load_fashion_mnist(context: DataContext, ind: InDistribution) -> ImageSet:
    """Fashion-MNIST's 10,000 test images (far-OOD)."""
    from torchvision.datasets import FashionMNIST

    return _mnist_like(context, FashionMNIST, "Fashion-MNIST")


# --- DTD (Describable Textures), the "Textures" OOD set of the literature. ----------------------


@OUT_OF_DISTRIBUTION.decorator("dtd")
def load_dtd(context: DataContext, ind: InDistribution) -> ImageSet:
    """DTD's test split (partition 1), resized and centre-cropped to 32×32."""
    from torchvision.datasets import DTD

    source = Source(
        what="DTD (textures, test split)",
        hint="dtd-r1.0.1.tar.gz extracted as dtd/dtd/ (with images/ and labels/)",
        factory=lambda root, download: DTD(root=root, split="test", download=download),
        files=lambda root: [(root / "dtd" / "dtd" / "labels" / "test1.txt", None)],
    )
    dtd = open_source(source, context)
    return load_image_files(list(dtd._image_files), show_progress=context.show_progress)
