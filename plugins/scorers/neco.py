"""NECO, NEural Collapse based Out-of-distribution detection (Ben Ammar et al., ICLR 2024).

Under neural collapse the ID features concentrate in the low-dimensional span of the class
means, while OOD features fall largely outside it. After standardising the features
(scikit-learn's StandardScaler, fitted on ID train) and a PCA of the ID train features, the
score is the share of the feature's norm that lies in the first d principal components:
‖P_d z‖ / ‖z‖ ∈ [0, 1], optionally multiplied by the max logit.
"""

from __future__ import annotations

import numpy as np

import ncood
from ncood.errors import NcoodError
from ncood.maths.stats import symmetric_eigh, train_moments
from ncood.store.chunked import map_rows
from ncood.store.features import Head, Split


def default_dim(num_classes: int, feature_dim: int) -> int:
    """C − 1, the dimension of the simplex ETF the class means collapse to (capped at D − 1)."""
    return max(1, min(num_classes - 1, feature_dim - 1))


class NECO(ncood.Scorer):
    def __init__(self, dim: int | None = None, maxlogit: bool = False) -> None:
        self.dim, self.maxlogit = dim, maxlogit

    def fit(self, train: Split, head: Head) -> None:
        num_classes = train.logits.shape[1]
        feature_dim = train.features.shape[1]
        dim = default_dim(num_classes, feature_dim) if self.dim is None else int(self.dim)
        if not 1 <= dim < feature_dim:
            raise NcoodError(
                f"neco.dim must be between 1 and D − 1 = {feature_dim - 1} (with d = D every "
                f"score would be 1); got {dim}"
            )
        self.resolved_params = {"dim": dim, "maxlogit": self.maxlogit}
        moments = train_moments(train, num_classes)
        scale = moments.std()
        scale[scale == 0] = 1.0  # StandardScaler leaves constant features unscaled
        # Covariance of the standardised features z = (f − m)/s, whose train mean is 0: the PCA.
        covariance = moments.global_covariance() / np.outer(scale, scale)
        _, eigvecs = symmetric_eigh(covariance)
        self.mean = moments.mean.astype(np.float32)
        self.inv_scale = (1.0 / scale).astype(np.float32)
        self.components = np.ascontiguousarray(eigvecs[:, ::-1][:, :dim], np.float32)

    def score(self, split: Split) -> np.ndarray:
        def block(chunk) -> np.ndarray:
            standardised = (chunk.features - self.mean) * self.inv_scale
            total = np.linalg.norm(standardised.astype(np.float64), axis=1)
            kept = np.linalg.norm((standardised @ self.components).astype(np.float64), axis=1)
            out = np.divide(kept, total, out=np.zeros_like(kept), where=total > 0)
            if self.maxlogit:
                out *= chunk.logits.max(axis=1).astype(np.float64)
            return out

        parts = ("features", "logits") if self.maxlogit else ("features",)
        return map_rows(split, block, parts)


@ncood.hookimpl
def register_scorers(register):
    register(
        "neco",
        NECO,
        "‖first d principal components‖ / ‖standardised feature‖",
        title="NECO",
        family="feature",
    )
