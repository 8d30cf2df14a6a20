"""Datasets as whole uint8 tensors, and the registries that name them.

Every dataset, embedded or downloaded, becomes an :class:`ImageSet` (N×3×32×32 uint8 + int64
labels). Holding the set as one tensor lets crop and flip run as batched tensor ops on the
same device as the model (ncood.engine.batches), so no loader process can starve the GPU.

In-distribution builders take a :class:`DataContext`; OOD builders also get the
in-distribution set (the embedded OOD sets match its size). Real datasets live in
``torchvision_sets``; ``folder:PATH`` names any folder of images (``image_folder``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ncood.errors import NcoodError
from ncood.registry import Registry

IMAGE_SIZE = 32
FOLDER_PREFIX = "folder:"


@dataclass
class ImageSet:
    images: torch.Tensor  # N×3×H×W uint8
    labels: torch.Tensor  # N int64 (−1 for OOD)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device) -> ImageSet:
        return ImageSet(self.images.to(device), self.labels.to(device))

    def subset(self, index: torch.Tensor) -> ImageSet:
        return ImageSet(self.images[index], self.labels[index])


@dataclass
class InDistribution:
    name: str
    train: ImageSet
    test: ImageSet
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@dataclass(frozen=True)
class DataContext:
    """Where datasets live and whether a missing one may be downloaded."""

    root: Path
    download: bool = True
    show_progress: bool = False


InBuilder = Callable[[DataContext], InDistribution]
OodBuilder = Callable[[DataContext, InDistribution], ImageSet]

IN_DISTRIBUTION: Registry[InBuilder] = Registry("dataset")
OUT_OF_DISTRIBUTION: Registry[OodBuilder] = Registry("OOD dataset")


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple, tuple]:
    """Per-channel mean and (unbiased) std in [0, 1] units, in chunks: bounded memory at 50k."""
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    for start in range(0, images.shape[0], chunk):
        block = images[start : start + chunk].to(torch.float64).div_(255)
        block = block.transpose(0, 1).reshape(channels, -1)
        total += block.sum(1)
        squares += block.square().sum(1)
    count = images.shape[0] * images[0, 0].numel()
    mean = total / count
    var = (squares - count * mean.square()) / max(count - 1, 1)
    return tuple(mean.tolist()), tuple(var.clamp_min(1e-6).sqrt().tolist())


def to_image_set(array_nhwc: np.ndarray, labels) -> ImageSet:
    images = torch.from_numpy(np.ascontiguousarray(array_nhwc)).permute(0, 3, 1, 2).contiguous()
    return ImageSet(images, torch.as_tensor(np.asarray(labels), dtype=torch.int64))


def ood_set(images_nchw: torch.Tensor) -> ImageSet:
    return ImageSet(
        images_nchw.contiguous(), torch.full((images_nchw.shape[0],), -1, dtype=torch.int64)
    )


def normalise(batch_uint8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (batch_uint8.float() / 255 - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def resize_gray(gray_uint8: torch.Tensor, size: int = IMAGE_SIZE) -> torch.Tensor:
    """N×h×w uint8 grey images → N×3×size×size uint8 (bilinear), as the CIFAR-shaped input."""
    up = F.interpolate(
        gray_uint8[:, None].float(), size=(size, size), mode="bilinear", align_corners=False
    )
    return up.round_().clamp_(0, 255).to(torch.uint8).repeat(1, 3, 1, 1)


# --- The embedded default: scikit-learn's bundled digits and sample photographs. -------------


def _upsample_gray(gray: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """N×h×w floats in [0, 1] → N×size×size×3 uint8."""
    tensor = torch.from_numpy(gray.astype(np.float32))[:, None]
    up = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False)
    up = (up.clamp(0, 1) * 255).round().to(torch.uint8)
    return up.repeat(1, 3, 1, 1).permute(0, 2, 3, 1).numpy()


@IN_DISTRIBUTION.decorator("digits")
def load_digits_set(context: DataContext | None = None) -> InDistribution:
    """scikit-learn's 1,797 handwritten digits (8×8), upsampled to 32×32; fixed 80/20 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = _upsample_gray(digits.images / 16.0)
    train_idx, test_idx = train_test_split(
        np.arange(len(digits.target)), test_size=0.2, random_state=0, stratify=digits.target
    )
    train = to_image_set(images[train_idx], digits.target[train_idx])
    test = to_image_set(images[test_idx], digits.target[test_idx])
    mean, std = channel_stats(train.images)
    return InDistribution("digits", train, test, 10, mean, std)


@OUT_OF_DISTRIBUTION.decorator("photos")
def load_photo_patches(context: DataContext | None, ind: InDistribution) -> ImageSet:
    """Grey 32×32 patches of scikit-learn's two bundled photographs (china, flower)."""
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(0)
    count = len(ind.test)
    patches = []
    for photo in load_sample_images().images:
        gray = photo.astype(np.float32).mean(axis=2) / 255.0
        small = F.avg_pool2d(torch.from_numpy(gray)[None, None], 2)[0, 0].numpy()
        for _ in range((count + 1) // 2):
            y = rng.integers(0, small.shape[0] - 16)
            x = rng.integers(0, small.shape[1] - 16)
            patches.append(small[y : y + 16, x : x + 16])
    images = _upsample_gray(np.stack(patches[:count]))
    return to_image_set(images, np.full(count, -1))


@OUT_OF_DISTRIBUTION.decorator("noise")
def load_uniform_noise(context: DataContext | None, ind: InDistribution) -> ImageSet:
    """Grey uniform noise at 8×8, upsampled like the digits: the easy sanity-check OOD set."""
    rng = np.random.default_rng(1)
    count = len(ind.test)
    images = _upsample_gray(rng.uniform(0, 1, size=(count, 8, 8)))
    return to_image_set(images, np.full(count, -1))


def synthetic_set(
    train_size: int, test_size: int, num_classes: int = 10, seed: int = 0
) -> InDistribution:
    """CIFAR-shaped colour images: half a class prototype (a smooth random pattern), half
    per-image uniform noise. Learnable, free of exactly tied pixels (unlike the digits' black
    background), generated in a blink at any size: for tests and benchmarks."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(num_classes, 3, 4, 4, generator=generator)
    prototypes = F.interpolate(coarse, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear")

    def make(count: int) -> ImageSet:
        labels = torch.randperm(count, generator=generator) % num_classes
        noise = torch.rand(count, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
        images = (127.5 * (prototypes[labels] + noise)).round_().clamp_(0, 255)
        return ImageSet(images.to(torch.uint8), labels)

    train, test = make(train_size), make(test_size)
    mean, std = channel_stats(train.images)
    return InDistribution("synthetic", train, test, num_classes, mean, std)


@IN_DISTRIBUTION.decorator("synthetic")
def load_synthetic(context: DataContext | None = None) -> InDistribution:
    """5,000 train / 1,000 test synthetic 32×32 colour images, 10 classes (no download)."""
    return synthetic_set(5000, 1000)


# --- Names → builders. ------------------------------------------------------------------------


def _register_real_datasets() -> None:
    """Importing the modules registers CIFAR, SVHN, MNIST, DTD … (torchvision loads lazily)."""
    from ncood.engine import torchvision_sets  # noqa: F401


def default_data_dir() -> Path:
    import os

    return Path(os.environ.get("NCOOD_DATA_DIR") or "data").expanduser()


def ood_name(spec: str) -> str:
    """The name an OOD set is stored under: itself, or a ``folder:PATH``'s base name."""
    if not spec.startswith(FOLDER_PREFIX):
        return spec
    folder = Path(spec[len(FOLDER_PREFIX) :]).expanduser()
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", folder.resolve().name).strip("-.") or "folder"
    return base


def check_names(dataset: str, ood: list[str]) -> None:
    """Unknown names are a one-line error before any data is read or any folder created."""
    _register_real_datasets()
    IN_DISTRIBUTION.get(dataset)
    seen: dict[str, str] = {}
    for spec in ood:
        if spec.startswith(FOLDER_PREFIX):
            if not spec[len(FOLDER_PREFIX) :]:
                raise NcoodError("folder: needs a path, e.g. --ood folder:/data/textures")
        else:
            OUT_OF_DISTRIBUTION.get(spec)
        name = ood_name(spec)
        if name in seen:
            raise NcoodError(f"OOD sets {seen[name]!r} and {spec!r} would both be named {name!r}")
        seen[name] = spec


def load_data(
    dataset: str,
    ood: list[str],
    data_dir: str | Path | None,
    *,
    download: bool = True,
    show_progress: bool = False,
) -> tuple[InDistribution, dict[str, ImageSet]]:
    from ncood.engine.image_folder import load_folder

    check_names(dataset, ood)
    root = Path(data_dir).expanduser() if data_dir else default_data_dir()
    context = DataContext(root, download, show_progress)
    ind = IN_DISTRIBUTION.get(dataset)(context)
    sets: dict[str, ImageSet] = {}
    for spec in ood:
        if spec.startswith(FOLDER_PREFIX):
            folder = Path(spec[len(FOLDER_PREFIX) :]).expanduser()
            sets[ood_name(spec)] = load_folder(folder, show_progress=show_progress)
        else:
            sets[spec] = OUT_OF_DISTRIBUTION.get(spec)(context, ind)
    return ind, sets
