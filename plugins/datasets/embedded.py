"""The datasets that ship inside installed packages, so the demo and the tests need no download:
scikit-learn's bundled digits (in-distribution), patches of its two sample photographs and
uniform noise (OOD), and generated CIFAR-shaped images (``synthetic``, ncood.datasets.synthetic)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import ncood

if TYPE_CHECKING:  # `ncood plugins` imports this module: no numpy or torch until a set loads
    import numpy as np

    from ncood.datasets import DataContext, ImageSet, InDistribution


def _upsample_gray(gray: np.ndarray) -> np.ndarray:
    """N×h×w floats in [0, 1] → N×32×32×3 uint8 (ncood's image size)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from ncood.datasets import IMAGE_SIZE

    tensor = torch.from_numpy(gray.astype(np.float32))[:, None]
    up = F.interpolate(tensor, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    up = (up.clamp(0, 1) * 255).round().to(torch.uint8)
    return up.repeat(1, 3, 1, 1).permute(0, 2, 3, 1).numpy()


def load_digits_set(context: DataContext | None = None) -> InDistribution:
    """scikit-learn's 1,797 handwritten digits (8×8), upsampled to 32×32; fixed 80/20 split."""
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from ncood.datasets import InDistribution, channel_stats, to_image_set

    digits = load_digits()
    images = _upsample_gray(digits.images / 16.0)
    train_idx, test_idx = train_test_split(
        np.arange(len(digits.target)), test_size=0.2, random_state=0, stratify=digits.target
    )
    train = to_image_set(images[train_idx], digits.target[train_idx])
    test = to_image_set(images[test_idx], digits.target[test_idx])
    mean, std = channel_stats(train.images)
    return InDistribution("digits", train, test, 10, mean, std)


def load_photo_patches(context: DataContext | None, ind: InDistribution) -> ImageSet:
    """Grey 32×32 patches of scikit-learn's two bundled photographs (china, flower)."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_sample_images

    from ncood.datasets import to_image_set

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


def load_uniform_noise(context: DataContext | None, ind: InDistribution) -> ImageSet:
    """Grey uniform noise at 8×8, upsampled like the digits: the easy sanity-check OOD set."""
    import numpy as np

    from ncood.datasets import to_image_set

    rng = np.random.default_rng(1)
    count = len(ind.test)
    images = _upsample_gray(rng.uniform(0, 1, size=(count, 8, 8)))
    return to_image_set(images, np.full(count, -1))


def load_synthetic(context: DataContext | None = None) -> InDistribution:
    """5,000 train / 1,000 test synthetic 32×32 colour images, 10 classes (no download)."""
    from ncood.datasets import synthetic_set

    return synthetic_set(5000, 1000)


@ncood.hookimpl
def register_datasets(register):
    register("digits", load_digits_set, "scikit-learn's handwritten digits, 10 classes")
    register("photos", ood=load_photo_patches, description="patches of two sample photographs")
    register("noise", ood=load_uniform_noise, description="grey uniform noise")
    register("synthetic", load_synthetic, "generated CIFAR-shaped images, 10 classes")
