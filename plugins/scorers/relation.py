"""Neural Relation Graph (Kim et al., NeurIPS 2023), as OpenOOD's RelationPostprocessor.

A sample's relation to an ID train sample j is ρ_j = max(0, ⟨f̂, f̂_j⟩) · ⟨p, p_j⟩ — the
cosine of the features, clipped at 0, times the agreement of the softmax outputs. The score
sums the relations above a cut-off, raised to a power: Σ_{ρ_j > τ} ρ_j^power. A sample related
to many ID train samples scores high. The search is exact (blocked matrix products); the
bank of normalized features and probabilities is N × (D + C) float32, hence ``bank_fraction``.
"""

from __future__ import annotations

import numpy as np

import ncood
from ncood.errors import NcoodError
from ncood.host.scoring import Fraction, check_seed
from ncood.store.chunked import map_rows
from ncood.store.features import Head, Split

QUERY_ROWS = 512  # queries per block
BANK_BLOCK = 16_384  # bank rows per product: two 512 × 16,384 float32 blocks, 64 MiB
MAX_POWER = 64  # ρ ≤ 1, so ρ^power underflows float32 long before this
MAX_BANK_BYTES = 4 << 30  # a bank above this (ImageNet's whole train split) is refused


def unit_rows(features: np.ndarray) -> np.ndarray:
    """f / sqrt(‖f‖² + 1e-10) in float32, the reference code's normalisation."""
    values = np.asarray(features, np.float32)
    return values / np.sqrt((values.astype(np.float64) ** 2).sum(axis=1) + 1e-10)[:, None].astype(
        np.float32
    )


def softmax_rows(logits: np.ndarray) -> np.ndarray:
    values = np.asarray(logits, np.float64)
    exp = np.exp(values - values.max(axis=1, keepdims=True))
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


class Relation(ncood.Scorer):
    def __init__(
        self,
        power: int = 1,
        threshold: float = 0.03,
        bank_fraction: Fraction = 1.0,
        seed: int = 0,
    ) -> None:
        if not 1 <= power <= MAX_POWER:
            raise ValueError(f"relation.power must be in [1, {MAX_POWER}], got {power}")
        if not 0 <= threshold < 1:
            raise ValueError(
                f"relation.threshold must be in [0, 1) (relations lie in [0, 1]), got {threshold}"
            )
        if not 0 < bank_fraction <= 1:
            raise ValueError(f"relation.bank_fraction must be in (0, 1], got {bank_fraction}")
        check_seed("relation.seed", seed)
        self.power, self.threshold = power, threshold
        self.bank_fraction, self.seed = bank_fraction, seed

    def fit(self, train: Split, head: Head) -> None:
        n = len(train)
        if not n:
            raise NcoodError("relation: the ID train split is empty")
        size = n if self.bank_fraction == 1 else max(1, round(self.bank_fraction * n))
        needed = size * (train.features.shape[1] + train.logits.shape[1]) * 4
        if needed > MAX_BANK_BYTES:
            fraction = MAX_BANK_BYTES / needed * self.bank_fraction
            scale = 10.0 ** np.floor(np.log10(fraction))
            fraction = np.floor(fraction / scale) * scale  # one digit, rounded down: it fits
            raise NcoodError(
                f"relation: a bank of {size:,} train samples needs {needed / 2**30:.1f} GiB "
                f"(float32 features and probabilities), more than the "
                f"{MAX_BANK_BYTES / 2**30:.0f} GiB allowed; --set relation.bank_fraction="
                f"{fraction:.1g} or less keeps a seeded share"
            )
        keep = None
        if size < n:  # a seeded random share of the bank, in file order
            keep = np.sort(np.random.default_rng(self.seed).choice(n, size, replace=False))
        features = np.empty((size, train.features.shape[1]), np.float32)
        probs = np.empty((size, train.logits.shape[1]), np.float32)
        filled = 0
        for chunk in train.chunks(parts=("features", "logits")):
            rows = slice(None)
            if keep is not None:
                lo, hi = np.searchsorted(keep, [chunk.start, chunk.stop])
                rows = keep[lo:hi] - chunk.start
            block_features, block_logits = chunk.features[rows], chunk.logits[rows]
            features[filled : filled + len(block_features)] = unit_rows(block_features)
            probs[filled : filled + len(block_features)] = softmax_rows(block_logits)
            filled += len(block_features)
        self.features, self.probs = features, probs
        self.resolved_params = {"bank_size": size}

    def score(self, split: Split) -> np.ndarray:
        return map_rows(split, self.of_chunk, ("features", "logits"), QUERY_ROWS)

    def of_chunk(self, chunk) -> np.ndarray:
        features, probs = unit_rows(chunk.features), softmax_rows(chunk.logits)
        total = np.zeros(len(chunk))
        for start in range(0, len(self.features), BANK_BLOCK):
            bank = slice(start, start + BANK_BLOCK)
            relation = features @ self.features[bank].T  # in place from here: one block
            np.maximum(relation, 0, out=relation)
            relation *= probs @ self.probs[bank].T
            np.multiply(relation, relation > self.threshold, out=relation)
            if self.power != 1:
                relation **= self.power
            total += relation.sum(axis=1, dtype=np.float64)
        return total


@ncood.hookimpl
def register_scorers(register):
    register(
        "relation",
        Relation,
        "sum of the relations (feature cosine × softmax agreement) to the ID train samples",
        title="Relation",
        family="feature",
    )
