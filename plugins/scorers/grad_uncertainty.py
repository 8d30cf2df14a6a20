"""GradUncertainty (Lee & AlRegib, ICIP 2020) on the last layer, as
pytorch-ood 0.4.0's ``GradUncertainty`` restricted to the head.

The loss is the binary cross-entropy between the softmax p and a "confounding label" of all
ones, L = −Σ_c log p_c; its gradient with respect to the logits is C p − 1, so with z = W f + b
∂L/∂W = (C p − 1) fᵀ and ∂L/∂b = C p − 1, in closed form: ‖∂L/∂W‖² = ‖C p − 1‖² ‖f‖².
The squared norm is larger for a confident prediction (it vanishes at the uniform softmax), so
it is the score as it stands (pytorch-ood returns its negative as the outlier score).
"""

from __future__ import annotations

import numpy as np

import ncood
from ncood.maths.stats import logsumexp_rows
from ncood.store.chunked import map_rows
from ncood.store.features import Split


class GradUncertainty(ncood.Scorer):
    """‖C p − 1‖² (‖f‖² + 1), the head's weight and bias (``bias = false``: the weight only)."""

    def __init__(self, bias: bool = True) -> None:
        self.bias = bias

    def score(self, split: Split) -> np.ndarray:
        def block(chunk) -> np.ndarray:
            logits = chunk.logits.astype(np.float64)
            probs = np.exp(logits - logsumexp_rows(logits)[:, None])
            gap = ((probs.shape[1] * probs - 1.0) ** 2).sum(axis=1)
            size = (chunk.features.astype(np.float64) ** 2).sum(axis=1)
            return gap * (size + (1.0 if self.bias else 0.0))

        return map_rows(split, block, ("features", "logits"))


@ncood.hookimpl
def register_scorers(register):
    register(
        "graduncertainty",
        GradUncertainty,
        "squared norm of the head's gradient of the BCE to an all-ones label",
        title="GradUncertainty",
        family="feature",
    )
