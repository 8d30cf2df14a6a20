"""The features file: what a network saw, dumped once so analysis never re-runs it.

One safetensors file per checkpoint epoch. For each split (``train``, ``test``, ``ood/<name>``):
``<split>/features`` float32 N×D (penultimate layer), ``<split>/logits`` float32 N×C,
``<split>/labels`` int64 N (−1 for OOD), optionally ``<split>/layers/<stage>`` float32 N×D_stage.
The classifier head is ``head/weight`` (C×D) and ``head/bias`` (C). See docs/run-format.md.

:func:`load_features` opens a file without loading it: ``split.features`` and the other large
arrays are read-only views on a memory map (:mod:`ncood.store.mapped`), validated by one streamed
pass, and ``split.chunks(rows)`` reads a split block by block, so an ImageNet-sized dump is
analyzed in memory that does not grow with N.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from ncood.errors import NcoodError
from ncood.store.atomic import atomic_path
from ncood.store.mapped import MappedFile, MappedFileError
from ncood.store.tensor_header import FLOATS, INTEGERS, check_dtypes

FORMAT_NAME = "ncood-features"
FORMAT_VERSION = "1"
OOD_PREFIX = "ood/"
# Default chunk: 4,096 rows (pieces of 2,048 for two threads keep syrk near its peak speed),
# fewer if that would exceed 32 MiB of the parts read. Memory per chunk stays small next to
# the file, and chunks are read one ahead, so it is paid about twice, plus float64 copies.
CHUNK_BYTES = 32 << 20
CHUNK_ROWS_MAX = 4096
CHUNK_ROWS: int | None = None  # if set, the default chunk in rows (tests force 1, 7, > N)
PARTS = ("features", "logits", "labels")  # what ``Split.chunks`` reads unless told


@dataclass(frozen=True)
class Chunk:
    """Rows ``start:stop`` of a split, in memory; a part that was not asked for is ``None``."""

    start: int
    stop: int
    features: np.ndarray | None = None
    logits: np.ndarray | None = None
    labels: np.ndarray | None = None
    layers: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.stop - self.start

    @property
    def rows(self) -> slice:
        """Where these rows sit in the split (to write per-row results into place)."""
        return slice(self.start, self.stop)

    def part(self, name: str) -> np.ndarray | None:
        """``"features"``, ``"logits"``, ``"labels"`` or ``"layers/<stage>"``."""
        if name.startswith("layers/"):
            return self.layers.get(name[len("layers/") :])
        return getattr(self, name)


@dataclass(frozen=True)
class _Backing:
    """Which of a split's arrays are views on a mapped file, and under which tensor name."""

    file: MappedFile
    tensors: dict[str, tuple[str, np.ndarray]]  # part → (tensor name, the view handed out)


@dataclass(frozen=True)
class Split:
    """Penultimate features, logits and labels of one set of images.

    The arrays may be in memory or views on a mapped file; either way :meth:`chunks` is the
    way to visit every row without holding more than one block in memory.
    """

    features: np.ndarray
    logits: np.ndarray
    labels: np.ndarray
    layers: dict[str, np.ndarray] = field(default_factory=dict)
    _backing: _Backing | None = field(default=None, repr=False, compare=False)
    # The same images seen by each run of an ensemble (ncood.store.members): set only on the
    # splits of a seeds folder's joined dump, for the scorers that say ``needs_members``.
    members: tuple[Split, ...] = field(default=(), repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def stage(self, name: str) -> Split:
        """This split with stage ``name``'s values as its features (``"features"``: itself), so
        that a scorer of the penultimate features reads that stage; still streamed from the file.
        The logits, labels and stages stay the split's."""
        if name == "features":
            return self
        values = self.part(f"layers/{name}")
        backing = None
        if self._backing is not None:
            tensors = {k: v for k, v in self._backing.tensors.items() if k != "features"}
            if f"layers/{name}" in tensors:
                tensors["features"] = tensors[f"layers/{name}"]
            backing = _Backing(self._backing.file, tensors)
        return Split(values, self.logits, self.labels, self.layers, backing)

    def part(self, name: str) -> np.ndarray:
        """``"features"``, ``"logits"``, ``"labels"`` or ``"layers/<stage>"``."""
        if name in PARTS:
            return getattr(self, name)
        if name.startswith("layers/") and name[len("layers/") :] in self.layers:
            return self.layers[name[len("layers/") :]]
        raise KeyError(f"split has no part {name!r}")

    def chunks(self, rows: int | None = None, parts: Iterable[str] = PARTS) -> Iterator[Chunk]:
        """The split as consecutive :class:`Chunk` s of ``rows`` rows (the last may be shorter).

        ``parts`` names what each chunk holds (default features, logits and labels; add
        ``"layers/<stage>"`` for a stage). ``rows`` defaults to 4,096 (fewer for wide rows: at
        most 32 MiB of those parts).
        File-backed parts are read with ``preadv`` one chunk ahead of the consumer, into a few
        buffers reused from chunk to chunk (:class:`ChunkBuffers`), so memory stays
        O(rows · row size) whatever N, and no allocator setting is needed to give it back.
        A chunk the caller still holds when its buffer comes round again keeps its values: that
        buffer is left to it and a new one is made.
        """
        parts = tuple(parts)
        arrays = {name: self.part(name) for name in parts}
        rows = CHUNK_ROWS if rows is None else rows
        if rows is None:
            row_bytes = sum(_row_bytes(values) for values in arrays.values())
            rows = max(1, min(CHUNK_ROWS_MAX, CHUNK_BYTES // max(row_bytes, 1)))
        if rows < 1:
            raise ValueError(f"chunk rows must be ≥ 1, got {rows}")
        mapped = {
            name: tensor
            for name, (tensor, view) in (self._backing.tensors if self._backing else {}).items()
            if name in arrays and arrays[name] is view
        }

        buffers = {name: ChunkBuffers(min(rows, len(self)), arrays[name]) for name in mapped}

        def read(start: int) -> Chunk:
            stop = min(start + rows, len(self))
            got = {
                name: self._backing.file.read_rows(mapped[name], start, stop, buffers[name].free())
                if name in mapped
                else values[start:stop]
                for name, values in arrays.items()
            }
            layers = {n[len("layers/") :]: v for n, v in got.items() if n.startswith("layers/")}
            return Chunk(
                start, stop, got.get("features"), got.get("logits"), got.get("labels"), layers
            )

        starts = range(0, len(self), rows)
        if not mapped:
            yield from map(read, starts)
            return
        with ThreadPoolExecutor(1, thread_name_prefix="ncood-read") as reader:
            pending = None
            for start in starts:
                ahead = reader.submit(read, start)
                if pending is not None:
                    yield pending.result()
                pending = ahead
            if pending is not None:
                yield pending.result()


class ChunkBuffers:
    """A few chunk-sized buffers for one part, handed out again once nobody holds them.

    Allocating and freeing a fresh chunk buffer each time leaves glibc to decide whether the
    freed memory goes back to the system (it raises its mmap threshold as large blocks are
    freed, then keeps them in its heaps): reusing the same buffers keeps the resident set flat
    without touching a process-wide allocator setting. Three are enough for a reader one chunk
    ahead: the one being filled, the one waiting, the one the consumer works on.
    """

    KEEP = 3

    def __init__(self, rows: int, like: np.ndarray) -> None:
        self.shape = (rows, *like.shape[1:])
        self.dtype = like.dtype
        self.pool: list[np.ndarray] = []

    def free(self) -> np.ndarray:
        """A buffer no chunk refers to any more (a chunk still held keeps its own)."""
        for buffer in self.pool:
            # Referenced only by the pool list, this loop and getrefcount's argument: every
            # view handed out on it (a chunk, a piece of one) is gone.
            if sys.getrefcount(buffer) <= 3:
                return buffer
        buffer = np.empty(self.shape, self.dtype)
        if len(self.pool) < self.KEEP:
            self.pool.append(buffer)
        else:  # chunks are being kept by the caller: stop pooling, let them own theirs
            self.pool[len(self.pool) - 1] = buffer
        return buffer


def _row_bytes(values: np.ndarray) -> int:
    return int(np.prod(values.shape[1:], dtype=np.int64)) * values.dtype.itemsize


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


def features_layout(
    classes: int, dim: int, splits: Mapping[str, int], stages: Mapping[str, int] | None = None
) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """Tensor name → (dtype, shape) of a features file: the head, then for each split of
    ``splits`` (name → images) its features, logits, labels and each stage of ``stages``
    (name → width)."""
    f32, i64 = np.dtype(np.float32), np.dtype(np.int64)
    layout = {"head/weight": (f32, (classes, dim)), "head/bias": (f32, (classes,))}
    for split, n in splits.items():
        layout[f"{split}/features"] = (f32, (n, dim))
        layout[f"{split}/logits"] = (f32, (n, classes))
        layout[f"{split}/labels"] = (i64, (n,))
        for stage, width in (stages or {}).items():
            layout[f"{split}/layers/{stage}"] = (f32, (n, width))
    return layout


def features_metadata(metadata: Mapping[str, str] | None = None) -> dict[str, str]:
    """The header's metadata: the format and its version, then the writer's (epoch, run …)."""
    return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **(metadata or {})}


def save_features(path: str | os.PathLike, dump: FeatureDump) -> None:
    """Write a dump held in memory, atomically; arrays are stored as float32 / int64 whatever
    they came as. A file written as it is computed goes through
    :class:`ncood.store.features_writer.FeaturesWriter` instead (same layout and header)."""
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
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=features_metadata(dump.metadata))


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


def open_features(path: str | os.PathLike) -> MappedFile:
    """The file mapped, its header checked by safetensors and against the file's size."""
    path = Path(path)
    check_readable(path)
    try:
        return MappedFile(path)
    except (MappedFileError, OSError) as exc:
        raise NcoodError(f"{path} is not a readable safetensors file ({exc})") from None


def load_features(path: str | os.PathLike, *, check_finite: bool = True) -> FeatureDump:
    """Open and validate a features file; every problem is one clear :class:`NcoodError`.

    Nothing large is loaded: features, logits and stage outputs stay on the memory map
    (converted in memory only if stored in another float type than float32); the head and the
    labels are read. Validation streams the file once, block by block.
    """
    path = Path(path)
    mapped = open_features(path)
    tensors = mapped.tensors

    def take(key: str) -> str:
        if key not in tensors:
            raise NcoodError(f"{path.name}: missing tensor {key!r}")
        return key

    weight = mapped.read(take("head/weight")).astype(np.float32, copy=False)
    bias = mapped.read(take("head/bias")).astype(np.float32, copy=False)
    if weight.ndim != 2 or bias.shape != (weight.shape[0],):
        raise NcoodError(
            f"{path.name}: head/weight must be C×D and head/bias C, got "
            f"{tuple(weight.shape)} and {tuple(bias.shape)}"
        )
    num_classes, dim = weight.shape
    if check_finite:
        for key, values in (("head/weight", weight), ("head/bias", bias)):
            bad = count_non_finite(values)
            if bad:
                raise NcoodError(f"{path.name}: {key} has {bad} non-finite values")

    def floats(key: str) -> np.ndarray:
        values = mapped.array(key)
        if values.dtype.kind != "f":
            raise NcoodError(f"{path.name}: {key} has dtype {values.dtype}, expected float32")
        return values if values.dtype == np.float32 else values.astype(np.float32)

    def split(name: str, *, ood: bool) -> Split:
        shapes = {part: tensors[take(f"{name}/{part}")].shape for part in PARTS}
        n = shapes["labels"][0] if len(shapes["labels"]) == 1 else -1
        if shapes["features"] != (n, dim) or shapes["logits"] != (n, num_classes):
            raise NcoodError(
                f"{path.name}: split {name!r} has features {shapes['features']}, logits "
                f"{shapes['logits']}, labels {shapes['labels']}; expected N×{dim}, "
                f"N×{num_classes}, N"
            )
        if n == 0:
            raise NcoodError(f"{path.name}: split {name!r} is empty")
        labels = mapped.read(f"{name}/labels")
        if labels.dtype.kind not in "iu":
            raise NcoodError(f"{path.name}: {name}/labels has dtype {labels.dtype}, expected int64")
        labels = labels.astype(np.int64, copy=False)
        if not ood and (labels.min() < 0 or labels.max() >= num_classes):
            raise NcoodError(
                f"{path.name}: split {name!r} has labels outside [0, {num_classes}) "
                f"(min {labels.min()}, max {labels.max()})"
            )
        prefix = f"{name}/layers/"
        stage_keys = sorted(k for k in tensors if k.startswith(prefix))
        for key in stage_keys:
            shape = tensors[key].shape
            if len(shape) != 2 or shape[0] != n:
                raise NcoodError(f"{path.name}: {key} has shape {shape}, expected {n}×D_stage")
        arrays = {"features": floats(f"{name}/features"), "logits": floats(f"{name}/logits")}
        arrays.update({"layers/" + k[len(prefix) :]: floats(k) for k in stage_keys})
        key_of = {part: f"{name}/{part}" for part in arrays}
        backing = _Backing(
            mapped,
            {
                part: (key_of[part], values)
                for part, values in arrays.items()
                if tensors[key_of[part]].dtype == np.float32
            },
        )
        layers = {p[len("layers/") :]: v for p, v in arrays.items() if p.startswith("layers/")}
        result = Split(arrays["features"], arrays["logits"], labels, layers, backing)
        if check_finite:
            for part in arrays:
                bad = sum(count_non_finite(c.part(part)) for c in result.chunks(None, (part,)))
                if bad:
                    what = part if part in PARTS else f"values in {part}"
                    raise NcoodError(f"{path.name}: split {name!r} has {bad} non-finite {what}")
        return result

    ood_names = sorted(
        k[len(OOD_PREFIX) : -len("/labels")]
        for k in tensors
        if k.startswith(OOD_PREFIX) and k.endswith("/labels")
    )
    return FeatureDump(
        train=split("train", ood=False),
        test=split("test", ood=False),
        ood={name: split(OOD_PREFIX + name, ood=True) for name in ood_names},
        head=Head(weight, bias),
        metadata=dict(mapped.metadata),
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


def count_non_finite(values: np.ndarray) -> int:
    """NaN and ±inf in ``values``; a float32 sum first, so a clean block costs one reduction."""
    with np.errstate(over="ignore", invalid="ignore"):
        if values.size == 0 or np.isfinite(values.sum(dtype=values.dtype)):
            return 0
    return int(values.size - np.count_nonzero(np.isfinite(values)))  # or the sum overflowed
