"""pNML, the single-layer predictive normalized maximum likelihood regret (Bibas et al.,
NeurIPS 2021), as pytorch-ood 0.4.0 computes it.

The regret measures how much the prediction could change had the sample been in the training
set with any label: large where the sample lies in directions the train features barely span.
With f̂ = f/‖f‖, G = Σ_train f̂ f̂ᵀ, κ = x/(1 + x) for x = f̂ᵀ G⁺ f̂ and p = softmax(W f̂ + b):
regret = log Σ_c p_c / (p_c + (1 − p_c) p_c^κ) / log C ∈ [0, 1]. Score = −regret.
"""

from __future__ import annotations

import numpy as np

import ncood
from ncood.errors import NcoodError
from ncood.maths.stats import head_arrays, logsumexp_rows, symmetric_eigh
from ncood.store.chunked import fold_chunks, map_rows
from ncood.store.features import Head, Split


def unit_rows(features: np.ndarray) -> np.ndarray:
    """f / max(‖f‖, 1e-12) in float64 (``torch.nn.functional.normalize``)."""
    values = np.asarray(features, np.float64)
    return values / np.maximum(np.linalg.norm(values, axis=1), 1e-12)[:, None]


class PNML(ncood.Scorer):
    def fit(self, train: Split, head: Head) -> None:
        self.weight, self.bias = head_arrays(head)
        if self.weight.shape[0] < 2:
            raise NcoodError("pnml needs at least 2 classes (the regret is divided by log C)")

        def gram(chunk) -> tuple[np.ndarray]:
            rows = unit_rows(chunk.features)
            return (rows.T @ rows,)

        (matrix,) = fold_chunks(train, gram, ("features",))
        values, vectors = symmetric_eigh(matrix)
        # G⁺, directions with eigenvalue ≤ D·ε·max treated as null (a rank decision, as pinv)
        keep = values > max(values.max(), 0.0) * len(values) * np.finfo(np.float64).eps
        self.root = vectors[:, keep] / np.sqrt(values[keep])  # G⁺ = root · rootᵀ
        self.log_classes = float(np.log(self.weight.shape[0]))

    def score(self, split: Split) -> np.ndarray:
        def block(chunk) -> np.ndarray:
            rows = unit_rows(chunk.features)
            projected = ((rows @ self.root) ** 2).sum(axis=1)
            kappa = projected / (1.0 + projected)
            logits = rows @ self.weight.T + self.bias
            log_p = logits - logsumexp_rows(logits)[:, None]
            # p / (p + (1 − p) p^κ) = 1 / (1 + (1 − p) p^(κ − 1)), in logs: no 0/0 for p → 0
            with np.errstate(over="ignore"):
                growth = -np.expm1(log_p) * np.exp((kappa[:, None] - 1.0) * log_p)
            regret = np.log(np.exp(-np.log1p(growth)).sum(axis=1))
            return -regret / self.log_classes

        return map_rows(split, block, ("features",))


@ncood.hookimpl
def register_scorers(register):
    register(
        "pnml",
        PNML,
        "minus the pNML regret of the head applied to the normalized feature",
        title="pNML",
        family="feature",
    )
