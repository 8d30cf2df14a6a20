"""GradNorm (Huang et al., NeurIPS 2021): the L1 norm of the gradient, with respect to the last
layer, of the cross-entropy between softmax(z / T) and the uniform distribution.

No autograd is needed. With L = −(1/C) Σ_c log softmax(z/T)_c and z = W f + b,
∂L/∂z = (p − u)/T (p = softmax(z/T), u = 1/C), so ∂L/∂W = ((p − u)/T) fᵀ, an outer product
whose L1 norm factorises: ‖∂L/∂W‖₁ = ‖p − u‖₁ · ‖f‖₁ / T (and ‖∂L/∂b‖₁ = ‖p − u‖₁ / T).
Streamed over the features and logits, in float64.
"""

from __future__ import annotations

import numpy as np

import ncood
from ncood.host.scoring import check_temperature
from ncood.maths.stats import logsumexp_rows
from ncood.store.chunked import map_rows
from ncood.store.features import Head, Split


class GradNorm(ncood.Scorer):
    """‖p − u‖₁ · ‖f‖₁ / T: larger for confident (ID) samples, so it is a score as it stands."""

    def __init__(self, T: float = 1.0, bias: bool = False) -> None:
        check_temperature("gradnorm.T", T)
        self.T, self.bias = T, bias

    def fit(self, train: Split, head: Head) -> None:
        return None

    def score(self, split: Split) -> np.ndarray:
        def block(chunk) -> np.ndarray:
            scaled = chunk.logits.astype(np.float64) / self.T
            probs = np.exp(scaled - logsumexp_rows(scaled)[:, None])
            spread = np.abs(probs - 1.0 / probs.shape[1]).sum(axis=1)
            feature_norm = np.abs(chunk.features.astype(np.float64)).sum(axis=1)
            return spread * (feature_norm + (1.0 if self.bias else 0.0)) / self.T

        return map_rows(split, block, ("features", "logits"))


@ncood.hookimpl
def register_scorers(register):
    register(
        "gradnorm",
        GradNorm,
        "L1 norm of the last layer's gradient of the KL to the uniform softmax (closed form)",
        title="GradNorm",
        family="feature",
    )
