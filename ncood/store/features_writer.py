"""A features file written as it is computed: the one writer of every streamed features file.

A network's outputs for a whole dataset need not fit in memory: the file is laid out from its
shapes (:func:`ncood.store.features.features_layout`, the header of
:func:`~ncood.store.features.features_metadata`), then each batch of rows lands at its offset
(:class:`ncood.store.streamed.StreamedSafetensors`). The engine's dump at a checkpoint
(ncood.engine.dump) and the extraction of an imported model (ncood.extraction.stream) both
write through it, so their files have the same tensors and header.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from ncood.store.features import features_layout, features_metadata
from ncood.store.streamed import StreamedSafetensors


class FeaturesWriter:
    """One features file: ``classes × dim`` head, ``splits`` (name → images), optional
    ``stages`` (name → width) stored under ``<split>/layers/<stage>``.

    A context manager: the file is renamed into place on a clean exit only; a write error
    (disk full) is remembered and raised there, and what was at ``path`` stays.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        classes: int,
        dim: int,
        splits: Mapping[str, int],
        stages: Mapping[str, int] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        self.file = StreamedSafetensors(
            path, features_layout(classes, dim, splits, stages), features_metadata(metadata)
        )

    def __enter__(self) -> FeaturesWriter:
        self.file.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        return self.file.__exit__(exc_type, exc, tb)

    def write_head(self, weight: np.ndarray, bias: np.ndarray) -> None:
        """The classifier: logits = features @ weight.T + bias."""
        self.file.write_rows("head/weight", 0, weight)
        self.file.write_rows("head/bias", 0, bias)

    def write_rows(self, split: str, part: str, start: int, rows: np.ndarray) -> None:
        """Rows ``start …`` of ``part`` (``features``, ``logits``, ``labels`` or
        ``layers/<stage>``) of ``split``, in any order."""
        self.file.write_rows(f"{split}/{part}", start, rows)
