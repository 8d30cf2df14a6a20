"""Generated CIFAR-shaped images: a learnable set at any size, in a blink, for tests and
benchmarks (the ``synthetic`` dataset of the built-in embedded-datasets plugin)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ncood.datasets.base import IMAGE_SIZE, ImageSet, InDistribution, channel_stats


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
