"""A digest of each split's images, recorded when a run is made and compared when the
model-based scorers rebuild its data: a ``folder:`` set whose images were replaced (the same
count, so the same sizes and labels) must not be scored as if it were the run's.

The sha256 of the uint8 image tensor (its shape, then its bytes in C order): one pass over
memory, about half a second for CIFAR-10's 60,000 images. A set left on disk is not read whole
for it (ImageNet's 140 GB): its digest is that of each file's name, size and label, in order.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping

import numpy as np

from ncood.datasets.base import ImageFiles, ImageSet


def image_digest(images: ImageSet | ImageFiles) -> str:
    if isinstance(images, ImageFiles):
        return _files_digest(images)
    values = np.ascontiguousarray(images.images.detach().cpu().numpy())
    digest = hashlib.sha256(repr(tuple(values.shape)).encode())
    digest.update(memoryview(values).cast("B"))
    return digest.hexdigest()


def _files_digest(files: ImageFiles) -> str:
    digest = hashlib.sha256(f"files {len(files)}".encode())
    for path, label in zip(files.paths, files.labels.tolist(), strict=True):
        try:
            size = os.stat(path).st_size
        except OSError:
            size = -1  # gone: the loader says which file when it reads it
        digest.update(f"{os.path.basename(path)}\0{size}\0{label}\n".encode())
    return digest.hexdigest()


def split_digests(splits: Mapping[str, ImageSet | ImageFiles]) -> dict[str, str]:
    """``{"train": ..., "test": ..., "ood/<set>": ...}`` → the digest of each."""
    return {name: image_digest(images) for name, images in splits.items()}
