"""Neural Relation Graph (Kim et al., NeurIPS 2023), as OpenOOD's RelationPostprocessor.

A sample's relation to an ID train sample j is ρ_j = max(0, ⟨f̂, f̂_j⟩) · ⟨p, p_j⟩ — the
cosine of the features, clipped at 0, times the agreement of the softmax outputs. The score
sums the relations above a cut-off, raised to a power: Σ_{ρ_j > τ} ρ_j^power. A sample related
to many ID train samples scores high. The search is exact (blocked matrix products); the
bank of normalized features and probabilities is N × (D + C) float32, hence ``bank_fraction``:
by default the bank rule of the scorers that search ID train (ncood/maths/bank.py: all of it up
to 200,000 samples, 1 % beyond, as knn and nnguide), and an estimate (``memory_bytes``) that
lets the analysis refuse a bank over the memory budget.
"""

from __future__ import annotations

import numpy as np

import ncood
from ncood.errors import NcoodError
from ncood.host.scoring import DumpShape, Fraction, check_seed
from ncood.maths.bank import bank_fraction, bank_rows, bank_size, kept_rows
from ncood.store.chunked import map_rows
from ncood.store.features import Head, Split

QUERY_ROWS = 512  # queries per block
BANK_BLOCK = 16_384  # bank rows per product: two 512 × 16,384 float32 blocks, 64 MiB
MAX_POWER = 64  # ρ ≤ 1, so ρ^power underflows float32 long before this


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
        bank_fraction: Fraction | None = None,
        seed: int = 0,
    ) -> None:
        if not 1 <= power <= MAX_POWER:
            raise ValueError(f"relation.power must be in [1, {MAX_POWER}], got {power}")
        if not 0 <= threshold < 1:
            raise ValueError(
                f"relation.threshold must be in [0, 1) (relations lie in [0, 1]), got {threshold}"
            )
        if bank_fraction is not None and not 0 < bank_fraction <= 1:
            raise ValueError(f"relation.bank_fraction must be in (0, 1], got {bank_fraction}")
        check_seed("relation.seed", seed)
        self.power, self.threshold = power, threshold
        self.bank_fraction, self.seed = bank_fraction, seed

    def memory_bytes(self, shape: DumpShape) -> int:
        """The float32 bank of features and probabilities, and one block of relations with
        its product of probabilities."""
        fraction = bank_fraction(self.bank_fraction, shape.train)
        size = bank_size(fraction, shape.train, 1)
        return 4 * size * (shape.dim + shape.classes) + 2 * 4 * QUERY_ROWS * BANK_BLOCK

    def fit(self, train: Split, head: Head) -> None:
        n = len(train)
        if not n:
            raise NcoodError("relation: the ID train split is empty")
        fraction = bank_fraction(self.bank_fraction, n)  # by default the recipes' 1 % at scale
        size = bank_size(fraction, n, 1)
        keep = bank_rows(n, size, self.seed)  # a seeded random share of the bank, in file order
        features = np.empty((size, train.features.shape[1]), np.float32)
        probs = np.empty((size, train.logits.shape[1]), np.float32)
        filled = 0
        for chunk in train.chunks(parts=("features", "logits")):
            rows = kept_rows(keep, chunk.start, chunk.stop)
            block_features, block_logits = chunk.features[rows], chunk.logits[rows]
            features[filled : filled + len(block_features)] = unit_rows(block_features)
            probs[filled : filled + len(block_features)] = softmax_rows(block_logits)
            filled += len(block_features)
        self.features, self.probs = features, probs
        self.resolved_params = {"bank_fraction": fraction, "bank_size": size}

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
