"""Class-conditional Gaussian scorers: Mahalanobis, its L2 approximation, and relative Mahalanobis.

All three model each class c by its train mean μ_c; Mahalanobis and RMDS add one covariance
shared by every class. Distances are negated, so higher = more in-distribution — the sign the
TP's Mahalanobis column (AUROC 0.149) got wrong.
"""

from __future__ import annotations

import numpy as np

import ncood
from ncood.maths.stats import cholesky, ridged, train_moments
from ncood.store.chunked import map_rows
from ncood.store.features import Head, Split

DEFAULT_RIDGE = 1e-6


class Whitener:
    """x ↦ L⁻¹(x − origin) with L Lᵀ = Σ, so that (x − y)ᵀ Σ⁻¹ (x − y) = ‖w(x) − w(y)‖²."""

    def __init__(self, covariance: np.ndarray, origin: np.ndarray, what: str) -> None:
        self.chol = cholesky(covariance, what)
        self.origin = origin

    def __call__(self, points: np.ndarray) -> np.ndarray:
        from scipy.linalg import solve_triangular  # imported when a Mahalanobis scorer runs

        shifted = np.asarray(points, np.float64) - self.origin
        return solve_triangular(self.chol, shifted.T, lower=True, check_finite=False).T


def nearest_squared_distance(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """minₖ ‖pᵢ − cₖ‖² for each row, through ‖p‖² − 2 p·c + ‖c‖² (float64, clipped at 0)."""
    squared = (
        np.einsum("ij,ij->i", points, points)[:, None]
        - 2.0 * (points @ centres.T)
        + np.einsum("ij,ij->i", centres, centres)[None, :]
    )
    return np.clip(squared.min(axis=1), 0.0, None)


class Mahalanobis(ncood.Scorer):
    """−min_c (f − μ_c)ᵀ Σ⁻¹ (f − μ_c), Σ the tied within-class covariance (Lee et al., 2018)."""

    def __init__(self, ridge: float = DEFAULT_RIDGE) -> None:
        if ridge < 0:
            raise ValueError(f"mahalanobis ridge must be ≥ 0, got {ridge}")
        self.ridge = ridge

    def fit(self, train: Split, head: Head) -> None:
        moments = train_moments(train, _num_classes(train, head))
        self.whiten = Whitener(
            ridged(moments.within_class_covariance(), self.ridge),
            moments.mean,
            "tied within-class covariance",
        )
        self.centres = self.whiten(moments.class_means)

    def score(self, split: Split) -> np.ndarray:
        return map_rows(
            split,
            lambda chunk: -nearest_squared_distance(self.whiten(chunk.features), self.centres),
            ("features",),
        )


class RelativeMahalanobis(Mahalanobis):
    """RMDS (Ren et al., 2021): −min_c [MD_c(f) − MD₀(f)].

    MD₀ is the Mahalanobis distance to the global mean under the global covariance.
    """

    def fit(self, train: Split, head: Head) -> None:
        super().fit(train, head)
        moments = train_moments(train, _num_classes(train, head))
        self.background = Whitener(
            ridged(moments.global_covariance(), self.ridge), moments.mean, "global covariance"
        )

    def score(self, split: Split) -> np.ndarray:
        def block(chunk) -> np.ndarray:
            background = self.background(chunk.features)
            md0 = np.einsum("ij,ij->i", background, background)
            return md0 - nearest_squared_distance(self.whiten(chunk.features), self.centres)

        return map_rows(split, block, ("features",))


class NearestMeanL2(ncood.Scorer):
    """The TP's "L2 approximation", correctly oriented: −min_c ‖f − μ_c‖."""

    def fit(self, train: Split, head: Head) -> None:
        moments = train_moments(train, _num_classes(train, head))
        self.origin = moments.mean
        self.centres = moments.class_means - moments.mean

    def score(self, split: Split) -> np.ndarray:
        def block(chunk) -> np.ndarray:
            shifted = np.asarray(chunk.features, np.float64) - self.origin
            return -np.sqrt(nearest_squared_distance(shifted, self.centres))

        return map_rows(split, block, ("features",))


def _num_classes(train: Split, head: Head | None) -> int:
    if head is not None:
        return int(head.weight.shape[0])
    return int(train.logits.shape[1])


@ncood.hookimpl
def register_scorers(register):
    register(
        "mahalanobis",
        Mahalanobis,
        "−min_c Mahalanobis distance to the class means (tied covariance)",
        title="Mahalanobis",
        family="feature",
    )
    register(
        "l2",
        NearestMeanL2,
        "−min_c ‖f − μ_c‖ (the TP's L2 approximation)",
        title="L2",
        family="feature",
    )
    register(
        "rmds",
        RelativeMahalanobis,
        "relative Mahalanobis: class distance minus the global-Gaussian distance",
        title="RMDS",
        family="feature",
    )
