"""The train bank of the scorers that search ID train (knn, nnguide, relation): how much of it
they keep, and which rows.

They search every scored sample against a bank of N_bank × D float32 train features. At
ImageNet-1K size the whole train split is a 10 GB bank and a search of hundreds of TFLOP, so
their published ImageNet recipes keep a random 1 % (the KNN paper, α = 1 %; OpenOOD's NNGuide,
``alpha: 0.01``). ``bank_fraction = None`` follows them: all of train up to
``LARGE_TRAIN`` samples (CIFAR, ImageNet-200), 1 % beyond.
"""

from __future__ import annotations

import numpy as np

LARGE_TRAIN = 200_000  # more ID train samples than this: the ImageNet-1K recipes' 1 % bank
LARGE_FRACTION = 0.01


def bank_fraction(given: float | None, train: int) -> float:
    """The share of ID train in the bank: ``given``, or by default the recipes' choice."""
    if given is not None:
        return given
    return 1.0 if train <= LARGE_TRAIN else LARGE_FRACTION


def bank_size(fraction: float, train: int, k: int) -> int:
    """Rows of the bank: the share of ``train``, at least k (a search needs k neighbours)."""
    if fraction == 1:
        return train
    return min(train, max(k, round(fraction * train)))


def bank_rows(train: int, size: int, seed: int) -> np.ndarray | None:
    """A seeded random choice of ``size`` of ``train`` rows, in file order (None: all)."""
    if size >= train:
        return None
    return np.sort(np.random.default_rng(seed).choice(train, size, replace=False))


def kept_rows(keep: np.ndarray | None, start: int, stop: int) -> slice | np.ndarray:
    """The rows of the chunk ``[start, stop)`` of train that the bank keeps (``bank_rows``),
    as an index into the chunk."""
    if keep is None:
        return slice(None)
    lo, hi = np.searchsorted(keep, [start, stop])
    return keep[lo:hi] - start
