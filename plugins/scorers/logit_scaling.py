"""LTS, Logit Scaling (Djurisic et al., 2025; arXiv:2409.01175), as pytorch-ood 0.4.0 computes it.

The logits are multiplied by a per-sample factor S = (s₁/s₂)² read from the activations —
s₁ the sum of all ReLU'd activations, s₂ the sum of the k largest — and scored by their
energy. Nothing is fitted: like SCALE, but on the logits rather than the activations.
"""

from __future__ import annotations

import numpy as np

import ncood
from ncood.host.scoring import Percent
from ncood.maths.stats import logsumexp_rows
from ncood.store.chunked import map_rows
from ncood.store.features import Head, Split


class LTS(ncood.Scorer):
    """Energy of S · z. k = max(1, D − round(D · percentile/100)): percentile 95 keeps the top
    5 % (pytorch-ood's p = 0.05). A sample without a positive activation (s₂ = 0) keeps S = 1."""

    def __init__(self, percentile: Percent = 95.0) -> None:
        if percentile == 100:
            raise ValueError("lts.percentile = 100 keeps no activation; lower it")
        self.percentile = percentile

    def fit(self, train: Split, head: Head) -> None:
        dim = train.features.shape[1]
        self.keep = max(1, dim - round(dim * (self.percentile / 100)))
        self.resolved_params = {"kept": self.keep}

    def factor(self, features: np.ndarray) -> np.ndarray:
        """S = (s₁/s₂)² of each row of a block of features."""
        active = np.maximum(np.asarray(features, np.float64), 0)
        cut = active.shape[1] - self.keep
        top = np.partition(active, cut, axis=1)[:, cut:] if cut else active
        total, kept = active.sum(axis=1), top.sum(axis=1)
        return np.divide(total, kept, out=np.ones(len(active)), where=kept > 0) ** 2

    def score(self, split: Split) -> np.ndarray:
        def block(chunk) -> np.ndarray:
            scale = self.factor(chunk.features)
            return logsumexp_rows(chunk.logits.astype(np.float64) * scale[:, None])

        return map_rows(split, block, ("features", "logits"))


@ncood.hookimpl
def register_scorers(register):
    register(
        "lts",
        LTS,
        "energy of the logits scaled by (sum / sum of the largest activations)²",
        title="LTS",
        family="shaping",
    )
