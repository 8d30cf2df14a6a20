"""ReAct (Sun et al., NeurIPS 2021): clip the features, recompute the logits, take the energy.

Abnormally large activations drive overconfident OOD logits; clipping each feature at the p-th
percentile of all ID train activations removes them. Score = logsumexp(W·min(f, c) + b).
"""

from __future__ import annotations

import numpy as np

import ncood
from ncood.host.scoring import Percent
from ncood.maths.stats import head_arrays, logsumexp_rows, percentile
from ncood.store.chunked import map_rows
from ncood.store.features import Head, Split


class ReAct(ncood.Scorer):
    def __init__(self, percentile: Percent = 90.0) -> None:
        if not 0 < percentile <= 100:
            raise ValueError(f"react.percentile must be in (0, 100], got {percentile}")
        self.percentile = percentile

    def fit(self, train: Split, head: Head) -> None:
        weight, bias = head_arrays(head)
        self.threshold = percentile(train, self.percentile)  # streamed, exact
        self.resolved_params = {"percentile": self.percentile, "threshold": self.threshold}
        self.weight_t = np.ascontiguousarray(weight.T)
        self.bias = bias

    def score(self, split: Split) -> np.ndarray:
        def block(chunk) -> np.ndarray:
            clipped = np.minimum(chunk.features, np.float32(self.threshold)).astype(np.float64)
            return logsumexp_rows(clipped @ self.weight_t + self.bias)

        return map_rows(split, block, ("features",))


@ncood.hookimpl
def register_scorers(register):
    register(
        "react",
        ReAct,
        "energy of the logits recomputed from features clipped at an ID percentile",
        title="ReAct",
        family="shaping",
    )
