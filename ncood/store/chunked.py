"""Streamed passes over a split: chunks read one ahead, each cut into one piece per core.

Every built-in scorer and analysis visits a large split through :func:`map_chunks` (per-piece
results, in row order) or :func:`map_rows` (one value per row), so memory is one chunk plus
what the function allocates for its piece, whatever the split's size. The pieces of a chunk run
on one thread per core with single-threaded BLAS: on the shared 2-core development VM this beat
OpenBLAS's own threading by 3× (syrk 0.3 s against 1.0 s for 50,000 × 512 while another process
held a core), and BLAS threads never spin against each other. NumPy releases the GIL inside BLAS
and most ufuncs, so the pieces really run in parallel.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
from threadpoolctl import threadpool_limits

from ncood.store.features import PARTS, Chunk, Split

WORKERS = max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1, 8))
MIN_PIECE_ROWS = 256  # below this, a chunk is not worth cutting for the threads
Result = TypeVar("Result")


def serial_blas():
    """A context in which BLAS runs on one thread: the pieces provide the parallelism, and
    LAPACK on small (D×D) matrices is faster so — OpenBLAS's threaded level-2 kernels inside
    ``eigh`` cost more in synchronisation than they save at D = 512, far more when other
    processes share the cores (a 512 × 512 ``eigh``: 0.06 s on one thread, 0.2–3.8 s on two,
    on the shared development VM)."""
    return threadpool_limits(1, user_api="blas")


def pieces(chunk: Chunk, count: int) -> list[Chunk]:
    """``chunk`` cut into at most ``count`` consecutive pieces of at least MIN_PIECE_ROWS rows
    (views, nothing copied)."""
    n = len(chunk)
    count = max(1, min(count, n // MIN_PIECE_ROWS))
    if count == 1:
        return [chunk]
    bounds = np.linspace(0, n, count + 1).astype(int)

    def cut(values: np.ndarray | None, a: int, b: int) -> np.ndarray | None:
        return None if values is None else values[a:b]

    return [
        Chunk(
            chunk.start + a,
            chunk.start + b,
            cut(chunk.features, a, b),
            cut(chunk.logits, a, b),
            cut(chunk.labels, a, b),
            {name: values[a:b] for name, values in chunk.layers.items()},
        )
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]


def map_chunks(
    split: Split,
    function: Callable[[Chunk], Result],
    parts: Iterable[str] = PARTS,
    rows: int | None = None,
) -> Iterator[Result]:
    """``function(piece)`` for every piece of every chunk of ``split``, results in row order.

    A generator: consume each result as it comes (add it to an accumulator), so that only
    one chunk's results are alive at a time. BLAS stays single-threaded until it is exhausted.
    """
    with serial_blas(), ThreadPoolExecutor(WORKERS, thread_name_prefix="ncood-chunk") as pool:
        for chunk in split.chunks(rows, parts):
            yield from pool.map(function, pieces(chunk, WORKERS))


def map_rows(
    split: Split,
    function: Callable[[Chunk], np.ndarray],
    parts: Iterable[str] = PARTS,
    rows: int | None = None,
    dtype=np.float64,
) -> np.ndarray:
    """:func:`map_chunks` for a function returning one value per row of its piece: the N values."""
    out = np.empty(len(split), dtype)
    start = 0
    for values in map_chunks(split, function, parts, rows):
        out[start : start + len(values)] = values
        start += len(values)
    return out


def fold_chunks(
    split: Split,
    function: Callable[[Chunk], tuple],
    parts: Iterable[str] = PARTS,
    rows: int | None = None,
) -> tuple:
    """The element-wise sum, over all pieces, of the tuples ``function(piece)`` returns
    (float64 accumulators: sums, scatter matrices, counts)."""
    total = None
    for partial in map_chunks(split, function, parts, rows):
        if total is None:
            total = [np.array(value, dtype=np.result_type(value, np.float64)) for value in partial]
        else:
            for accumulator, value in zip(total, partial, strict=True):
                accumulator += value
    if total is None:
        raise ValueError("fold_chunks over an empty split")
    return tuple(total)
