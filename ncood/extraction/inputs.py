"""The images of each split as batches for the model: from ncood datasets, loaders or tensors.

A :class:`Source` knows its size before the first batch (the features file is laid out up
front) and can be iterated again, once per checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

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
