"""The features file: what a network saw, dumped once so analysis never re-runs it.

One safetensors file per checkpoint epoch. For each split (``train``, ``test``, ``ood/<name>``):
``<split>/features`` float32 N×D (penultimate layer), ``<split>/logits`` float32 N×C,
``<split>/labels`` int64 N (−1 for OOD), optionally ``<split>/layers/<stage>`` float32 N×D_stage.
The classifier head is ``head/weight`` (C×D) and ``head/bias`` (C). See docs/run-format.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save_file

from ncood.atomic import atomic_path
from ncood.errors import NcoodError
from ncood.tensor_header import FLOATS, INTEGERS, check_dtypes

FORMAT_NAME = "ncood-features"
FORMAT_VERSION = "1"
OOD_PREFIX = "ood/"


@dataclass(frozen=True)
class Split:
    """Penultimate features, logits and labels of one set of images."""

    features: np.ndarray
    logits: np.ndarray
    labels: np.ndarray
    layers: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class Head:
    """The linear classifier: logits = features @ weight.T + bias."""

    weight: np.ndarray
    bias: np.ndarray


@dataclass(frozen=True)
class FeatureDump:
    """Everything an analysis may use: ID train/test, each OOD set, and the head."""

    train: Split
    test: Split
    ood: dict[str, Split]
    head: Head
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return int(self.head.weight.shape[0])

    @property
    def feature_dim(self) -> int:
        return int(self.head.weight.shape[1])

    def splits(self) -> dict[str, Split]:
        named = {"train": self.train, "test": self.test}
        named.update({OOD_PREFIX + name: split for name, split in self.ood.items()})
        return named


def save_features(path: str | os.PathLike, dump: FeatureDump) -> None:
    """Write atomically; arrays are stored as float32 / int64 whatever they came as."""
    tensors: dict[str, np.ndarray] = {
        "head/weight": np.ascontiguousarray(dump.head.weight, dtype=np.float32),
        "head/bias": np.ascontiguousarray(dump.head.bias, dtype=np.float32),
    }
    for name, split in dump.splits().items():
        tensors[f"{name}/features"] = np.ascontiguousarray(split.features, dtype=np.float32)
        tensors[f"{name}/logits"] = np.ascontiguousarray(split.logits, dtype=np.float32)
        tensors[f"{name}/labels"] = np.ascontiguousarray(split.labels, dtype=np.int64)
        for layer, values in split.layers.items():
            tensors[f"{name}/layers/{layer}"] = np.ascontiguousarray(values, dtype=np.float32)
    metadata = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **dump.metadata}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def check_readable(path: str | os.PathLike) -> None:
    """Fail fast, reading the header only, on a path that is not a safetensors file."""
    path = Path(path)
    if not path.is_file():
        raise NcoodError(f"features file not found: {path}")
    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise NcoodError(f"{path} is not a readable safetensors file ({exc})") from None
    check_metadata(path, metadata)
    check_dtypes(path, _allowed_dtypes)


def load_features(path: str | os.PathLike, *, check_finite: bool = True) -> FeatureDump:
    """Read and validate a features file; every problem is one clear :class:`NcoodError`."""
    path = Path(path)
    check_readable(path)
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="numpy") as handle:
            metadata = dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise NcoodError(f"{path} is not a readable safetensors file ({exc})") from None

    def take(key: str) -> np.ndarray:
        if key not in tensors:
            raise NcoodError(f"{path.name}: missing tensor {key!r}")
        return tensors[key]

    weight, bias = take("head/weight"), take("head/bias")
    if weight.ndim != 2 or bias.shape != (weight.shape[0],):
        raise NcoodError(
            f"{path.name}: head/weight must be C×D and head/bias C, got "
            f"{tuple(weight.shape)} and {tuple(bias.shape)}"
        )
    num_classes, dim = weight.shape
    if check_finite:
        for key, values in (("head/weight", weight), ("head/bias", bias)):
            bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
            if bad:
                raise NcoodError(f"{path.name}: {key} has {bad} non-finite values")

    def split(name: str, *, ood: bool) -> Split:
        features, logits, labels = (
            take(f"{name}/{part}") for part in ("features", "logits", "labels")
        )
        n = labels.shape[0] if labels.ndim == 1 else -1
        if labels.ndim != 1 or features.shape != (n, dim) or logits.shape != (n, num_classes):
            raise NcoodError(
                f"{path.name}: split {name!r} has features {tuple(features.shape)}, logits "
                f"{tuple(logits.shape)}, labels {tuple(labels.shape)}; expected N×{dim}, "
                f"N×{num_classes}, N"
            )
        if n == 0:
            raise NcoodError(f"{path.name}: split {name!r} is empty")
        if check_finite:
            for part, values in (("features", features), ("logits", logits)):
                bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
                if bad:
                    raise NcoodError(f"{path.name}: split {name!r} has {bad} non-finite {part}")
        labels = whole_labels(path, name, labels)
        if not ood and (labels.min() < 0 or labels.max() >= num_classes):
            raise NcoodError(
                f"{path.name}: split {name!r} has labels outside [0, {num_classes}) "
                f"(min {labels.min()}, max {labels.max()})"
            )
        prefix = f"{name}/layers/"
        layers = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        return Split(
            features.astype(np.float32, copy=False),
            logits.astype(np.float32, copy=False),
            labels,
            layers,
        )

    ood_names = sorted(
        k[len(OOD_PREFIX) : -len("/labels")]
        for k in tensors
        if k.startswith(OOD_PREFIX) and k.endswith("/labels")
    )
    return FeatureDump(
        train=split("train", ood=False),
        test=split("test", ood=False),
        ood={name: split(OOD_PREFIX + name, ood=True) for name in ood_names},
        head=Head(weight.astype(np.float32, copy=False), bias.astype(np.float32, copy=False)),
        metadata=metadata,
    )


def _allowed_dtypes(name: str) -> tuple[str, ...]:
    """Labels are whole numbers (integers, or floats holding whole values); the rest floats."""
    return (*INTEGERS, *FLOATS) if name.endswith("/labels") else FLOATS


def check_metadata(path: Path, metadata: dict[str, str]) -> None:
    """The metadata ncood reads must say what it is: a features file, a whole epoch."""
    form = metadata.get("format")
    if form is not None and form != FORMAT_NAME:
        raise NcoodError(f"{Path(path).name} is a {form!r} file, not {FORMAT_NAME!r}")
    epoch = metadata.get("epoch")
    if epoch is not None and not (epoch.isascii() and epoch.isdigit() and len(epoch) < 10):
        raise NcoodError(f"{Path(path).name}: metadata epoch {epoch[:20]!r} is not an epoch")


def whole_labels(path: Path, name: str, labels: np.ndarray) -> np.ndarray:
    """int64 labels; float labels must hold whole numbers (2.7 is never silently 2)."""
    if labels.dtype.kind == "f":
        finite = np.isfinite(labels)
        if not finite.all() or np.any(labels != np.round(labels)):
            raise NcoodError(
                f"{Path(path).name}: split {name!r} has labels that are not whole numbers"
            )
        if np.any(np.abs(labels) > 2**53):
            raise NcoodError(f"{Path(path).name}: split {name!r} has out-of-range labels")
    elif labels.dtype.kind == "u" and labels.size and labels.max() > np.iinfo(np.int64).max:
        raise NcoodError(f"{Path(path).name}: split {name!r} has out-of-range labels")
    return labels.astype(np.int64, copy=False)
