"""ViM, Virtual-logit Matching (Wang et al., CVPR 2022).

The feature's residual — its part outside the principal space of the ID train features, seen
from the origin u = −W⁺b where every logit is zero — becomes a virtual logit α‖r‖ matched in
scale to the real ones. Score = logsumexp(logits) − α‖r‖: higher = more in-distribution.
"""

from __future__ import annotations

import numpy as np

import ncood
from ncood.errors import NcoodError
from ncood.maths.stats import (
    head_arrays,
    logit_summary,
    logsumexp_rows,
    symmetric_eigh,
    train_moments,
)
from ncood.store.chunked import map_rows
from ncood.store.features import Head, Split


def paper_dim(feature_dim: int) -> int:
    """The principal-space dimension of the ViM paper and its code: 1000 for D ≥ 2048, 512 for
    D ≥ 768, D/2 below (256 for the ResNet-18's D = 512)."""
    if feature_dim >= 2048:
        return 1000
    if feature_dim >= 768:
        return 512
    return max(1, feature_dim // 2)


def pseudo_inverse_times(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """W⁺v through the eigen-decomposition of the small Gram matrix WWᵀ (C×C): W⁺ = Wᵀ(WWᵀ)⁺.

    Equal to ``np.linalg.pinv(W) @ v`` (to 1e-16 on a 100 × 512 head) but without an SVD of
    W, which LAPACK makes surprisingly slow (up to a second) for this shape. Directions with
    σ² ≤ max(C, D)·ε·σ²_max are treated as null, as a rank decision on WWᵀ must.
    """
    wide = matrix.shape[0] <= matrix.shape[1]
    gram = matrix @ matrix.T if wide else matrix.T @ matrix
    eigvals, eigvecs = symmetric_eigh(gram)
    keep = eigvals > eigvals.max() * max(matrix.shape) * np.finfo(np.float64).eps
    basis, values = eigvecs[:, keep], eigvals[keep]
    if wide:  # W⁺v = Wᵀ (WWᵀ)⁺ v
        return matrix.T @ (basis @ ((basis.T @ vector) / values))
    return basis @ ((basis.T @ (matrix.T @ vector)) / values)  # (WᵀW)⁺ Wᵀ v


class ViM(ncood.Scorer):
    name = "vim"  # how errors name the parameter

    def __init__(self, dim: int | None = None) -> None:
        self.dim = dim

    def fit(self, train: Split, head: Head) -> None:
        weight, bias = head_arrays(head)
        feature_dim = weight.shape[1]
        dim = paper_dim(feature_dim) if self.dim is None else int(self.dim)
        if not 1 <= dim < feature_dim:
            raise NcoodError(
                f"{self.name}.dim must be between 1 and D − 1 = {feature_dim - 1} (the "
                f"features have D = {feature_dim}); got {dim}"
            )
        self.resolved_params = {"dim": dim}
        self.origin = -pseudo_inverse_times(weight, bias)
        moments = train_moments(train, weight.shape[0])
        _, eigvecs = symmetric_eigh(moments.second_moment_about(self.origin))
        # eigh sorts eigenvalues ascending: the first D − dim vectors span the residual space.
        self.residual_basis = np.ascontiguousarray(eigvecs[:, : feature_dim - dim], np.float32)
        self.origin32 = self.origin.astype(np.float32)
        residuals = map_rows(train, lambda chunk: self.residual_norm(chunk.features), ("features",))
        train_residual = residuals.mean()
        if not train_residual > 0:
            raise NcoodError(
                f"the ID train features have no residual outside a {dim}-dimensional principal "
                f"space; lower {self.name}.dim"
            )
        self.alpha = float(logit_summary(train).mean_max_logit / train_residual)

    def residual_norm(self, features: np.ndarray) -> np.ndarray:
        """‖r(f)‖ of each row of a block of features."""
        projected = (features - self.origin32) @ self.residual_basis
        return np.linalg.norm(projected.astype(np.float64), axis=1)

    def score(self, split: Split) -> np.ndarray:
        def block(chunk) -> np.ndarray:
            return logsumexp_rows(chunk.logits) - self.alpha * self.residual_norm(chunk.features)

        return map_rows(split, block, ("features", "logits"))


class Residual(ViM):
    """ViM's residual alone (OpenOOD's ResidualPostprocessor): −‖r(f)‖, the same origin, principal
    space and ``dim`` as ``vim``, without the logits."""

    name = "residual"

    def score(self, split: Split) -> np.ndarray:
        return map_rows(split, lambda chunk: -self.residual_norm(chunk.features), ("features",))


@ncood.hookimpl
def register_scorers(register):
    register(
        "vim",
        ViM,
        "logsumexp(logits) − α‖residual outside the principal space‖",
        title="ViM",
        family="feature",
    )
    register(
        "residual",
        Residual,
        "minus the norm of the feature's part outside the ID principal space (ViM's residual)",
        title="Residual",
        family="feature",
    )
