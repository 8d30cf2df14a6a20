"""A digest of each split's images, recorded when a run is made and compared when the
model-based scorers rebuild its data: a ``folder:`` set whose images were replaced (the same
count, so the same sizes and labels) must not be scored as if it were the run's.

The sha256 of the uint8 image tensor (its shape, then its bytes in C order): one pass over
memory, about half a second for CIFAR-10's 60,000 images.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np

from ncood.datasets.base import ImageSet


def image_digest(images: ImageSet) -> str:
    values = np.ascontiguousarray(images.images.detach().cpu().numpy())
    digest = hashlib.sha256(repr(tuple(values.shape)).encode())
    digest.update(memoryview(values).cast("B"))
    return digest.hexdigest()


def split_digests(splits: Mapping[str, ImageSet]) -> dict[str, str]:
    """``{"train": ..., "test": ..., "ood/<set>": ...}`` → the digest of each."""
    return {name: image_digest(images) for name, images in splits.items()}
