"""The ``nc`` analysis: Neural Collapse metrics of a features dump (Papyan et al., 2020)."""

from __future__ import annotations

from typing import Any

import numpy as np

import ncood
from ncood.errors import NcoodError
from ncood.features import FeatureDump


def class_means(features: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """C×D float64 class means; every class must have at least one sample."""
    counts = np.bincount(labels, minlength=num_classes)
    if np.any(counts == 0):
        missing = np.flatnonzero(counts == 0).tolist()
        raise NcoodError(f"classes {missing} have no train sample; class means are undefined")
    sums = np.zeros((num_classes, features.shape[1]))
    np.add.at(sums, labels, features.astype(np.float64))
    return sums / counts[:, None]


def within_between(features, labels, num_classes):
    """Σ_W (mean of within-class covariances over samples) and Σ_B (of the centred means)."""
    x = features.astype(np.float64)
    means = class_means(x, labels, num_classes)
    centred = x - means[labels]
    sigma_w = centred.T @ centred / x.shape[0]
    global_mean = means.mean(axis=0)
    m = means - global_mean
    sigma_b = m.T @ m / num_classes
    return sigma_w, sigma_b, means


def nc1(sigma_w: np.ndarray, sigma_b: np.ndarray, num_classes: int) -> tuple[float, int]:
    """Tr(Σ_W Σ_B†)/C with Σ_B† from the top C−1 eigenpairs of Σ_B (its true rank)."""
    eigvals, eigvecs = np.linalg.eigh(sigma_b)
    rank = min(num_classes - 1, sigma_b.shape[0])
    top_vals, top_vecs = eigvals[-rank:], eigvecs[:, -rank:]
    keep = top_vals > top_vals.max() * 1e-12
    pinv = (top_vecs[:, keep] / top_vals[keep]) @ top_vecs[:, keep].T
    return float(np.trace(sigma_w @ pinv) / num_classes), int(keep.sum())


class NeuralCollapse:
    """NC1 on the train features (more metrics come through this same analysis)."""

    def run(self, dump: FeatureDump) -> dict[str, Any]:
        c = dump.num_classes
        sigma_w, sigma_b, _ = within_between(dump.train.features, dump.train.labels, c)
        value, rank = nc1(sigma_w, sigma_b, c)
        return {
            "nc1": value,
            "nc1_rank": rank,
            "nc1_trace_ratio": float(np.trace(sigma_w) / np.trace(sigma_b)),
        }


@ncood.hookimpl
def register_analyses(register):
    register("nc", NeuralCollapse, "Neural Collapse metrics NC1–NC5")
