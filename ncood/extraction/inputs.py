"""The images of each split as batches for the model: from ncood datasets, loaders or tensors.

A :class:`Source` knows its size before the first batch (the features file is laid out up
front) and can be iterated again, once per checkpoint.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ncood.errors import NcoodError

Batch = tuple[torch.Tensor, torch.Tensor]  # inputs ready for the model, int64 labels


@dataclass(frozen=True)
class Source:
    count: int
    batches: Callable[[torch.device], Iterator[Batch]]


def from_image_set(images, preprocess, batch_size: int) -> Source:
    """An ncood ``ImageSet`` (uint8), preprocessed batch by batch on the model's device."""

    def batches(device: torch.device) -> Iterator[Batch]:
        for start in range(0, len(images), batch_size):
            chunk = images.images[start : start + batch_size].to(device, non_blocking=True)
            yield preprocess.apply(chunk), images.labels[start : start + batch_size]

    return Source(len(images), batches)


def default_workers() -> int:
    """Loader processes that decode image files: one a core, at most 8 (more gain little)."""
    return min(8, os.cpu_count() or 1)


class _DecodedFiles(torch.utils.data.Dataset):
    """Image files decoded and cropped in a loader worker: ``(uint8 C×H×W, label, error)``.

    The paths are one numpy array of bytes (a byte a character), not a list of objects, so
    that forked workers share them instead of copying pages that reference counts touch. A
    file that cannot be read gives an error text instead of raising, so that the main process
    says it in one line.
    """

    def __init__(self, files, transform, crop: int):
        self.paths = np.array([os.fsencode(p) for p in files.paths], dtype=np.bytes_)
        self.labels = files.labels.numpy().astype(np.int64)
        self.transform = transform
        self.blank = torch.zeros((3, crop, crop), dtype=torch.uint8)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        from PIL import Image, UnidentifiedImageError

        path = os.fsdecode(self.paths[index])
        try:
            with open(path, "rb") as handle:  # as torchvision's ImageFolder opens them
                image = Image.open(handle).convert("RGB")
            return self.transform(image), int(self.labels[index]), ""
        except UnidentifiedImageError:
            reason = "not an image format PIL reads"
        except Exception as exc:  # any decoder failure is the file's
            reason = " ".join(str(exc).split())
        return self.blank, int(self.labels[index]), f"{path} ({reason})"


def decode_files(
    files, preprocess, batch_size: int, device: torch.device, workers: int | None = None
) -> Iterator[Batch]:
    """An ``ImageFiles`` set as uint8 batches on ``device``, in its order, decoded by
    ``workers`` processes (pinned memory on CUDA, a few batches prefetched); memory holds a few
    batches whatever the number of images. Normalizing is left to the caller."""
    workers = default_workers() if workers is None else workers
    dataset = _DecodedFiles(files, preprocess.file_transform(), preprocess.crop)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if workers > 0 else None,
    )
    for images, labels, errors in loader:
        failed = next((e for e in errors if e), None)
        if failed:
            raise NcoodError(f"could not read image {failed}")
        yield images.to(device, non_blocking=True), labels


def from_image_files(files, preprocess, batch_size: int, workers: int | None = None) -> Source:
    """An ncood ``ImageFiles`` set, decoded in worker processes, normalized on the device."""

    def batches(device: torch.device) -> Iterator[Batch]:
        for images, labels in decode_files(files, preprocess, batch_size, device, workers):
            yield preprocess.apply(images), labels

    return Source(len(files), batches)


def from_split(images, preprocess, batch_size: int, workers: int | None = None) -> Source:
    """A split as ncood's datasets give it: in memory (``ImageSet``) or on disk."""
    from ncood.datasets import ImageFiles

    if isinstance(images, ImageFiles):
        return from_image_files(images, preprocess, batch_size, workers)
    return from_image_set(images, preprocess, batch_size)


def from_tensors(inputs: torch.Tensor, labels: torch.Tensor | None, batch_size: int) -> Source:
    """Preprocessed images (N×…) and their labels (None: an OOD set)."""
    if not isinstance(inputs, torch.Tensor) or inputs.ndim < 2:
        raise NcoodError("tensor inputs must be one N×… tensor of preprocessed images")
    count = int(inputs.shape[0])
    if labels is None:
        labels = torch.full((count,), -1, dtype=torch.int64)
    labels = torch.as_tensor(labels).reshape(-1).to(torch.int64)
    if labels.shape[0] != count:
        raise NcoodError(f"{count} images but {labels.shape[0]} labels")

    def batches(device: torch.device) -> Iterator[Batch]:
        for start in range(0, count, batch_size):
            chunk = inputs[start : start + batch_size].to(device, non_blocking=True)
            yield chunk, labels[start : start + batch_size]

    return Source(count, batches)


def from_loader(loader: Iterable, what: str) -> Source:
    """A ``DataLoader`` (or any re-iterable of ``(inputs, labels)`` or ``inputs``) of a sized
    dataset; it must yield every image once (no ``drop_last``, no sampler that repeats)."""
    count = _size_of(loader, what)

    def batches(device: torch.device) -> Iterator[Batch]:
        for item in loader:
            if isinstance(item, list | tuple) and len(item) >= 2:
                inputs, labels = item[0], torch.as_tensor(item[1]).reshape(-1).to(torch.int64)
            elif isinstance(item, list | tuple):
                inputs, labels = item[0], None
            else:
                inputs, labels = item, None
            if not isinstance(inputs, torch.Tensor):
                raise NcoodError(f"{what}: the loader gave {type(inputs).__name__}, not a tensor")
            if labels is None:
                labels = torch.full((inputs.shape[0],), -1, dtype=torch.int64)
            yield inputs.to(device, non_blocking=True), labels

    return Source(count, batches)


def _size_of(loader: Iterable, what: str) -> int:
    dataset = getattr(loader, "dataset", None)
    if dataset is None:
        raise NcoodError(f"{what}: give a DataLoader (its dataset's size is needed up front)")
    if getattr(loader, "drop_last", False):
        raise NcoodError(f"{what}: the loader drops its last batch (drop_last=True)")
    try:
        return int(len(dataset))
    except TypeError:
        raise NcoodError(f"{what}: the loader's dataset has no len(), needed up front") from None


def as_source(value, what: str, batch_size: int) -> Source:
    """``value`` as the API takes it: a Source, a loader, a tensor, or (inputs, labels)."""
    if isinstance(value, Source):
        return value
    if isinstance(value, torch.Tensor):
        return from_tensors(value, None, batch_size)
    if (
        isinstance(value, tuple)
        and len(value) == 2
        and all(isinstance(v, torch.Tensor) for v in value)
    ):
        return from_tensors(value[0], value[1], batch_size)
    if hasattr(value, "__iter__"):
        return from_loader(value, what)
    raise NcoodError(
        f"{what}: give a DataLoader, a tensor of images, or an (images, labels) pair of tensors"
    )
