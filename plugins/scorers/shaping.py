"""Activation shaping: change the penultimate activations (or the head), recompute the logits,
take their energy. DICE, ASH-P, ASH-B, ASH-S, SCALE and VRA.

ASH and SCALE (and VRA) shape a vector of activations per sample. By default that vector is
the pooled penultimate feature f (D values, pytorch-ood's N×D×1×1 maps). With ``maps`` set to
a stage of the features file whose width is D·S — the last stage's maps before the global
average pooling, flattened channel-major as PyTorch's ``reshape(N, -1)`` of N×D×H×W, S = H·W —
the shaping applies to those D·S values and their spatial mean feeds the head, as in the ASH
paper. Everything is streamed chunk by chunk and computed in float64.
"""

from __future__ import annotations

import numpy as np

import ncood
from ncood.errors import NcoodError
from ncood.host.scoring import Percent
from ncood.maths.stats import head_arrays, logsumexp_rows
from ncood.store.chunked import fold_chunks, map_rows
from ncood.store.features import Head, Split


def check_percent(name: str, value: float) -> None:
    if not 0 <= value <= 100:
        raise ValueError(f"{name} must be in [0, 100] (a percentage), got {value}")


class Shaper(ncood.Scorer):
    """The activations a scorer shapes (features, or a stage's maps) and the head after them."""

    name = ""

    def __init__(self, maps: str = "") -> None:
        self.maps = maps

    def fit(self, train: Split, head: Head) -> None:
        weight, bias = head_arrays(head)
        self.weight_t, self.bias = np.ascontiguousarray(weight.T), bias
        dim = weight.shape[1]
        self.part = "features"
        self.spatial = 1
        if self.maps:
            self.part = f"layers/{self.maps}"
            if self.maps not in train.layers:
                known = ", ".join(sorted(train.layers)) or "none in this file"
                raise NcoodError(
                    f"{self.name}.maps: no stage {self.maps!r} in the features file (stages: "
                    f"{known})"
                )
            width = train.layers[self.maps].shape[1]
            if width % dim:
                raise NcoodError(
                    f"{self.name}.maps: stage {self.maps!r} has {width} values per sample, not "
                    f"a multiple of the feature dimension D = {dim} (D maps of H·W values)"
                )
            self.spatial = width // dim
        self.dim = dim
        self.size = dim * self.spatial
        self.fit_shape(train)

    def fit_shape(self, train: Split) -> None:
        return None

    def shape(self, activations: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def energy(self, shaped: np.ndarray) -> np.ndarray:
        pooled = shaped.reshape(len(shaped), self.dim, self.spatial).mean(axis=2)
        return logsumexp_rows(pooled @ self.weight_t + self.bias)

    def score(self, split: Split) -> np.ndarray:
        if self.part != "features" and self.maps not in split.layers:
            raise NcoodError(f"{self.name}.maps: a split has no stage {self.maps!r}")

        def block(chunk) -> np.ndarray:
            return self.energy(self.shape(chunk.part(self.part).astype(np.float64)))

        return map_rows(split, block, (self.part,))


class TopActivations(Shaper):
    """The k = n − round(n · percentile/100) largest of each sample's n activations."""

    def __init__(self, percentile: Percent = 90.0, maps: str = "") -> None:
        check_percent(f"{self.name}.percentile", percentile)
        super().__init__(maps)
        self.percentile = percentile

    def fit_shape(self, train: Split) -> None:
        self.keep = self.size - int(np.round(self.size * (self.percentile / 100)))
        if self.keep < 1:
            raise NcoodError(
                f"{self.name}.percentile = {self.percentile} keeps none of the {self.size} "
                "activations; lower it"
            )
        self.resolved_params = {"kept": self.keep, "shaped": self.part}

    def top(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Indices and values of each row's ``keep`` largest entries (ties: an arbitrary
        choice among equal values, as ``torch.topk``)."""
        cut = values.shape[1] - self.keep
        index = np.argpartition(values, cut, axis=1)[:, cut:] if cut else None
        if index is None:
            return np.broadcast_to(np.arange(values.shape[1]), values.shape), values
        return index, np.take_along_axis(values, index, axis=1)

    def pruned(self, values: np.ndarray, kept: np.ndarray, index: np.ndarray) -> np.ndarray:
        out = np.zeros_like(values)
        np.put_along_axis(out, index, kept, axis=1)
        return out


class AshP(TopActivations):
    """ASH-P (Djurisic et al., ICLR 2023): zero all but the largest activations."""

    name = "ash-p"

    def shape(self, values: np.ndarray) -> np.ndarray:
        index, kept = self.top(values)
        return self.pruned(values, kept, index)


class AshB(TopActivations):
    """ASH-B: the kept activations all set to s₁/k, s₁ the sum of all of them."""

    name = "ash-b"

    def shape(self, values: np.ndarray) -> np.ndarray:
        index, _ = self.top(values)
        fill = np.broadcast_to((values.sum(axis=1) / self.keep)[:, None], index.shape)
        return self.pruned(values, fill, index)


class AshS(TopActivations):
    """ASH-S: prune, then multiply the kept activations by exp(s₁/s₂), s₂ their sum."""

    name = "ash-s"

    def shape(self, values: np.ndarray) -> np.ndarray:
        index, kept = self.top(values)
        factor = np.exp(values.sum(axis=1) / kept.sum(axis=1))
        return self.pruned(values, kept * factor[:, None], index)


class Scale(TopActivations):
    """SCALE (Xu et al., ICLR 2024): every activation × exp(s₁/s₂), nothing pruned."""

    name = "scale"

    def __init__(self, percentile: Percent = 85.0, maps: str = "") -> None:
        super().__init__(percentile, maps)

    def shape(self, values: np.ndarray) -> np.ndarray:
        _, kept = self.top(values)
        return values * np.exp(values.sum(axis=1) / kept.sum(axis=1))[:, None]


class Dice(ncood.Scorer):
    """DICE (Sun & Li, ECCV 2022): drop the p % smallest weight contributions m_j · W_cj (m the
    mean ID train feature), then the energy of the sparsified head's logits."""

    def __init__(self, p: Percent = 90.0) -> None:
        check_percent("dice.p", p)
        if p == 100:
            raise ValueError("dice.p = 100 prunes every weight: every score would be the same")
        self.p = p

    def fit(self, train: Split, head: Head) -> None:
        weight, bias = head_arrays(head)
        (total,) = fold_chunks(
            train, lambda chunk: (chunk.features.astype(np.float64).sum(axis=0),), ("features",)
        )
        contribution = (total / len(train))[None, :] * weight
        threshold = float(np.percentile(contribution, self.p))
        masked = np.where(contribution > threshold, weight, 0.0)
        self.weight_t, self.bias = np.ascontiguousarray(masked.T), bias
        self.resolved_params = {"threshold": threshold, "kept_weights": int((masked != 0).sum())}

    def score(self, split: Split) -> np.ndarray:
        return map_rows(
            split,
            lambda chunk: logsumexp_rows(
                chunk.features.astype(np.float64) @ self.weight_t + self.bias
            ),
            ("features",),
        )


class VRA(Shaper):
    """VRA as pytorch-ood implements it (Xu et al., NeurIPS 2023): clip every activation
    between its own lower and upper percentile over the ID train split."""

    name = "vra"

    def __init__(
        self, lower_percentile: Percent = 10.0, upper_percentile: Percent = 90.0, maps: str = ""
    ) -> None:
        check_percent("vra.lower_percentile", lower_percentile)
        check_percent("vra.upper_percentile", upper_percentile)
        if not lower_percentile < upper_percentile:
            raise ValueError(
                "vra.lower_percentile must be below vra.upper_percentile (equal bounds clip "
                "every activation to one value: every score would be the same)"
            )
        super().__init__(maps)
        self.lower_percentile, self.upper_percentile = lower_percentile, upper_percentile

    def fit_shape(self, train: Split) -> None:
        self.lower, self.upper = column_percentiles(
            train, self.part, [self.lower_percentile, self.upper_percentile]
        )
        self.resolved_params = {"shaped": self.part}

    def shape(self, values: np.ndarray) -> np.ndarray:
        return np.clip(values, self.lower, self.upper)


# --- exact per-column percentiles, streamed -------------------------------------------------

RADIX_BITS = 8  # four passes of 256 bins per column
COLUMN_BLOCK_BYTES = 32 << 20  # float32 columns held at once by the partition path (a chunk's)


def order_keys(values: np.ndarray) -> np.ndarray:
    """Float32 values as uint32 keys in the same order (negative: all bits flipped)."""
    bits = np.ascontiguousarray(values, np.float32).view(np.uint32)
    return np.where(bits >> 31 == 1, ~bits, bits | np.uint32(0x80000000))


def key_values(keys: np.ndarray) -> np.ndarray:
    """The inverse of :func:`order_keys`."""
    keys = keys.astype(np.uint32)
    bits = np.where(keys >> 31 == 1, keys & np.uint32(0x7FFFFFFF), ~keys)
    return bits.astype(np.uint32).view(np.float32)


def column_percentiles(split: Split, part: str, qs: list[float]) -> list[np.ndarray]:
    """``np.percentile(values, q, axis=0)`` (linear) of each column of ``split``'s float32
    ``part``, for each q, exactly, in bounded memory.

    The two neighbouring order statistics of every column come from ``np.partition`` of
    blocks of columns holding at most ``COLUMN_BLOCK_BYTES`` (one streamed pass per block),
    or, when that would take more passes than the radix select, from a most-significant-digit
    radix select on the float32 bit patterns, 8 bits a pass (four passes, counting only the
    rows that still match each column's prefix).
    """
    n, width = len(split), split.part(part).shape[1]
    virtual = [(n - 1) * (q / 100) for q in qs]
    ranks = sorted(
        {r for v in virtual for r in (int(np.floor(v)), min(int(np.floor(v)) + 1, n - 1))}
    )
    block = max(1, COLUMN_BLOCK_BYTES // (4 * n))
    if -(-width // block) <= 32 // RADIX_BITS:
        order = partitioned(split, part, ranks, block)
    else:
        order = radix_select(split, part, ranks)
    out = []
    for v in virtual:
        below = int(np.floor(v))
        lo, hi = order[below], order[min(below + 1, n - 1)]
        out.append(lo + (hi - lo) * (v - below))
    return out


def partitioned(split: Split, part: str, ranks: list[int], block: int) -> dict[int, np.ndarray]:
    width = split.part(part).shape[1]
    found = {rank: np.empty(width) for rank in ranks}
    for first in range(0, width, block):
        columns = slice(first, min(first + block, width))
        values = np.empty((len(split), columns.stop - first), np.float32)
        for chunk in split.chunks(parts=(part,)):
            values[chunk.rows] = chunk.part(part)[:, columns]
        values.partition(ranks, axis=0)
        for rank in ranks:
            found[rank][columns] = values[rank]
        del values
    return found


def radix_select(split: Split, part: str, ranks: list[int]) -> dict[int, np.ndarray]:
    width = split.part(part).shape[1]
    targets = len(ranks)
    bins = 1 << RADIX_BITS
    columns = np.arange(width) * bins
    prefix = np.zeros((targets, width), np.uint32)
    remaining = np.repeat(np.array(ranks, np.int64)[:, None], width, axis=1)
    for done in range(0, 32, RADIX_BITS):
        shift = 32 - done - RADIX_BITS

        def count(chunk, shift=shift, done=done, prefix=prefix):
            keys = order_keys(chunk.part(part))
            slot = ((keys >> np.uint32(shift)) & np.uint32(bins - 1)).astype(np.int64) + columns
            if done == 0:
                return (np.bincount(slot.ravel(), minlength=width * bins)[None, :],)
            high = keys >> np.uint32(shift + RADIX_BITS)
            return (
                np.stack(
                    [
                        np.bincount(slot[high == prefix[t]], minlength=width * bins)
                        for t in range(targets)
                    ]
                ),
            )

        (counts,) = fold_chunks(split, count, (part,))
        counts = np.broadcast_to(counts, (targets, width * bins)).reshape(targets, width, bins)
        cumulative = np.cumsum(counts, axis=2)
        digit = np.argmax(cumulative > remaining[:, :, None], axis=2)
        before = np.where(
            digit > 0,
            np.take_along_axis(cumulative, np.maximum(digit - 1, 0)[:, :, None], axis=2)[..., 0],
            0,
        )
        remaining -= before.astype(np.int64)
        prefix = (prefix << np.uint32(RADIX_BITS)) | digit.astype(np.uint32)
    return {rank: key_values(prefix[t]).astype(np.float64) for t, rank in enumerate(ranks)}


@ncood.hookimpl
def register_scorers(register):
    register(
        "dice",
        Dice,
        "energy of the logits of a head without its p % smallest weight contributions",
        title="DICE",
        family="shaping",
    )
    register(
        "ash-p",
        AshP,
        "energy after zeroing all but the largest activations",
        title="ASH-P",
        family="shaping",
    )
    register(
        "ash-b",
        AshB,
        "energy after keeping the largest activations, binarised to preserve the sum",
        title="ASH-B",
        family="shaping",
    )
    register(
        "ash-s",
        AshS,
        "energy after pruning and exp(s1/s2)-sharpening the largest activations",
        title="ASH-S",
        family="shaping",
    )
    register(
        "scale",
        Scale,
        "energy of the activations scaled by exp(sum / sum of the largest)",
        title="SCALE",
        family="shaping",
    )
    register(
        "vra",
        VRA,
        "energy of the activations clipped between per-unit ID train percentiles",
        title="VRA",
        family="shaping",
    )
