"""Datasets as whole uint8 tensors, and the augmentation as tensor ops.

Every dataset, embedded or downloaded, becomes an :class:`ImageSet` (N×3×H×W uint8 + int64
labels). Holding the set as one tensor lets crop and flip run as batched tensor ops on the
same device as the model, so no loader process can starve the GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ncood.errors import NcoodError
from ncood.registry import Registry

IMAGE_SIZE = 32


@dataclass
class ImageSet:
    images: torch.Tensor  # N×3×H×W uint8
    labels: torch.Tensor  # N int64 (−1 for OOD)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class InDistribution:
    name: str
    train: ImageSet
    test: ImageSet
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


InBuilder = Callable[[Path | None], InDistribution]
OodBuilder = Callable[[Path | None, InDistribution], ImageSet]

IN_DISTRIBUTION: Registry[InBuilder] = Registry("dataset")
OUT_OF_DISTRIBUTION: Registry[OodBuilder] = Registry("OOD dataset")


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    pixels = images.float().div_(255).transpose(0, 1).reshape(images.shape[1], -1)
    return tuple(pixels.mean(1).tolist()), tuple(pixels.std(1).clamp_min(1e-3).tolist())


def to_image_set(array_nhwc: np.ndarray, labels) -> ImageSet:
    images = torch.from_numpy(np.ascontiguousarray(array_nhwc)).permute(0, 3, 1, 2).contiguous()
    return ImageSet(images, torch.as_tensor(np.asarray(labels), dtype=torch.int64))


def normalise(batch_uint8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (batch_uint8.float() / 255 - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def random_crop_flip(
    batch: torch.Tensor, padding: int, flip: bool, generator: torch.Generator
) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, per sample, in one gather."""
    n, _, h, w = batch.shape
    if padding > 0:
        padded = F.pad(batch, (padding,) * 4)
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(batch.device)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(batch.device)
        rows = (dy[:, None] + torch.arange(h, device=batch.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=batch.device))[:, None, None, :]
        index = torch.arange(n, device=batch.device)[:, None, None, None]
        channels = torch.arange(batch.shape[1], device=batch.device)[None, :, None, None]
        batch = padded[index, channels, rows, cols]
    if flip:
        flips = torch.rand(n, generator=generator).to(batch.device) < 0.5
        batch = torch.where(flips[:, None, None, None], batch.flip(3), batch)
    return batch


# --- The embedded default: scikit-learn's bundled digits and sample photographs. -------------


def _upsample_gray(gray: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """N×h×w floats in [0, 1] → N×size×size×3 uint8."""
    tensor = torch.from_numpy(gray.astype(np.float32))[:, None]
    up = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False)
    up = (up.clamp(0, 1) * 255).round().to(torch.uint8)
    return up.repeat(1, 3, 1, 1).permute(0, 2, 3, 1).numpy()


@IN_DISTRIBUTION.decorator("digits")
def load_digits_set(data_dir: Path | None = None) -> InDistribution:
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
def load_photo_patches(data_dir: Path | None, ind: InDistribution) -> ImageSet:
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
def load_uniform_noise(data_dir: Path | None, ind: InDistribution) -> ImageSet:
    """Grey uniform noise at 8×8, upsampled like the digits: the easy sanity-check OOD set."""
    rng = np.random.default_rng(1)
    count = len(ind.test)
    images = _upsample_gray(rng.uniform(0, 1, size=(count, 8, 8)))
    return to_image_set(images, np.full(count, -1))


# --- Real datasets through torchvision. -------------------------------------------------------


def _torchvision_dataset(factory, data_dir: Path | None, what: str, files: str):
    root = Path(data_dir or "data").expanduser()
    try:
        return factory(root=str(root), download=False)
    except (RuntimeError, FileNotFoundError, OSError):
        pass
    try:
        return factory(root=str(root), download=True)
    except Exception:
        raise NcoodError(
            f"{what} is not under {root} and could not be downloaded: put {files} in {root} "
            f"(or pass --data-dir DIR)"
        ) from None


@IN_DISTRIBUTION.decorator("cifar100")
def load_cifar100(data_dir: Path | None = None) -> InDistribution:
    from torchvision.datasets import CIFAR100

    def part(train: bool):
        return _torchvision_dataset(
            lambda **kw: CIFAR100(train=train, **kw),
            data_dir,
            "CIFAR-100",
            "cifar-100-python.tar.gz or its extracted cifar-100-python/ folder",
        )

    train, test = part(True), part(False)
    train_set = to_image_set(train.data, train.targets)
    mean, std = channel_stats(train_set.images)
    return InDistribution(
        "cifar100", train_set, to_image_set(test.data, test.targets), 100, mean, std
    )


@OUT_OF_DISTRIBUTION.decorator("svhn")
def load_svhn_test(data_dir: Path | None, ind: InDistribution) -> ImageSet:
    from torchvision.datasets import SVHN

    svhn = _torchvision_dataset(
        lambda **kw: SVHN(split="test", **kw), data_dir, "SVHN (test split)", "test_32x32.mat"
    )
    images = torch.from_numpy(np.ascontiguousarray(svhn.data))  # already N×3×32×32
    return ImageSet(images, torch.full((images.shape[0],), -1, dtype=torch.int64))


def load_data(
    dataset: str, ood: list[str], data_dir: str | None
) -> tuple[InDistribution, dict[str, ImageSet]]:
    root = Path(data_dir) if data_dir else None
    in_builder = IN_DISTRIBUTION.get(dataset)
    ood_builders = {name: OUT_OF_DISTRIBUTION.get(name) for name in ood}
    ind = in_builder(root)
    return ind, {name: build(root, ind) for name, build in ood_builders.items()}
