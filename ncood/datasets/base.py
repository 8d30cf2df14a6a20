"""The types every dataset module and dataset plugin shares: image sets as whole uint8
tensors, the builders' signatures, and the conversions between arrays, tensors and inputs.

Every CIFAR-sized dataset, embedded or downloaded, becomes an :class:`ImageSet` (N×3×32×32
uint8 + int64 labels); a set at its own resolution stays on disk as :class:`ImageFiles`.
Holding a CIFAR-sized set as one tensor lets crop and flip run as batched tensor ops on the same
device as the model (ncood.engine.batches), so no loader process can starve the GPU.

In-distribution builders take a :class:`DataContext`; OOD builders also get the
in-distribution set (the embedded OOD sets match its size). Plugins register them by name
through ``register_datasets`` (ncood.host.entries). This module imports no other dataset
module, so the helpers (``synthetic``, ``sources``, ``image_folder``) and the name resolution
(``loading``) depend on it and never on each other in a circle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

IMAGE_SIZE = 32


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
class ImageFiles:
    """A set left on disk: image files decoded batch by batch at their own resolution, so that
    memory does not grow with the number of images (ImageNet's 1.28M train images)."""

    paths: list[Path] | list[str]  # str for long lists: 1.28M Path objects cost 430 MiB
    labels: torch.Tensor  # N int64 (−1 for OOD)

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, index: torch.Tensor) -> ImageFiles:
        return ImageFiles([self.paths[i] for i in index.tolist()], self.labels[index])


@dataclass
class InDistribution:
    name: str
    train: ImageSet | ImageFiles
    test: ImageSet | ImageFiles
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    # file-backed sets: the default preprocessing, shorter side resized to ``resize`` then a
    # centre crop of ``crop`` (None for the in-memory 32-px sets)
    resize: int | None = None
    crop: int | None = None


@dataclass(frozen=True)
class DataContext:
    """Where datasets live and whether a missing one may be downloaded."""

    root: Path
    download: bool = True
    show_progress: bool = False


InBuilder = Callable[[DataContext], InDistribution]
OodBuilder = Callable[[DataContext, InDistribution], ImageSet]


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


def normalize(batch_uint8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (batch_uint8.float() / 255 - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def resize_gray(gray_uint8: torch.Tensor, size: int = IMAGE_SIZE) -> torch.Tensor:
    """N×h×w uint8 grey images → N×3×size×size uint8 (bilinear), as the CIFAR-shaped input."""
    up = F.interpolate(
        gray_uint8[:, None].float(), size=(size, size), mode="bilinear", align_corners=False
    )
    return up.round_().clamp_(0, 255).to(torch.uint8).repeat(1, 3, 1, 1)
