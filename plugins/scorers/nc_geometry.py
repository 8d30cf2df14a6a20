"""Scorers built on the geometry neural collapse gives the last layer: NCI, fDBD and SHE.

Under collapse the features of class c gather at their class mean, the means form a simplex
around the global mean μ_G, and each classifier row w_c points at its class mean. These scorers
measure how well a feature fits that picture for the class the network predicts (ŷ = argmax z).
"""

from __future__ import annotations

import numpy as np

import ncood
from ncood.maths.stats import class_sums, head_arrays, predicted_classes
from ncood.store.chunked import fold_chunks, map_rows
from ncood.store.features import Head, Split


def _norms(values: np.ndarray) -> np.ndarray:
    return np.linalg.norm(values, axis=1)


def feature_mean(split: Split) -> np.ndarray:
    """The float64 mean of a split's features, streamed."""
    (total,) = fold_chunks(
        split, lambda c: (c.features.sum(axis=0, dtype=np.float64),), ("features",)
    )
    return total / len(split)


class NCI(ncood.Scorer):
    """NCI (Liu & Qin, CVPR 2025): ⟨w_ŷ, f − μ_G⟩ / ‖f − μ_G‖ + α‖f‖₁.

    The first term is the proximity of the centred feature to the predicted class's classifier
    row; the second, an L1 norm weighted by α, filters features near the origin.
    """

    def __init__(self, alpha: float = 1e-4) -> None:
        self.alpha = alpha

    def fit(self, train: Split, head: Head) -> None:
        self.weight, _ = head_arrays(head)
        self.global_mean = feature_mean(train)

    def score(self, split: Split) -> np.ndarray:
        return map_rows(split, self.of_chunk, ("features", "logits"))

    def of_chunk(self, chunk) -> np.ndarray:
        features = chunk.features.astype(np.float64)
        centred = features - self.global_mean
        rows = self.weight[predicted_classes(chunk.logits)]
        length = _norms(centred)
        proximity = np.divide(
            np.einsum("ij,ij->i", rows, centred),
            length,
            out=np.zeros(len(chunk)),
            where=length > 0,
        )
        return proximity + self.alpha * np.abs(features).sum(axis=1)


class FDBD(ncood.Scorer):
    """fDBD (Liu & Qin, ICML 2024): mean feature-space distance to the decision boundaries.

    The distance from f to the boundary between ŷ and c is (z_ŷ − z_c) / ‖w_ŷ − w_c‖ (exact for
    a linear head, bias included); its mean over the C − 1 other classes is divided by
    ‖f − μ_G‖ (``center``, the paper's choice) or by ‖f‖.
    """

    def __init__(self, center: bool = True) -> None:
        self.center = center

    def fit(self, train: Split, head: Head) -> None:
        weight, _ = head_arrays(head)
        squared = np.einsum("ij,ij->i", weight, weight)
        gaps = np.sqrt(
            np.clip(squared[:, None] + squared[None, :] - 2 * weight @ weight.T, 0, None)
        )
        np.fill_diagonal(gaps, 0.0)
        self.inverse_gap = np.divide(1.0, gaps, out=np.zeros_like(gaps), where=gaps > 0)
        self.global_mean = feature_mean(train)

    def score(self, split: Split) -> np.ndarray:
        return map_rows(split, self.of_chunk, ("features", "logits"))

    def of_chunk(self, chunk) -> np.ndarray:
        logits = chunk.logits.astype(np.float64)
        predicted = predicted_classes(chunk.logits)
        margins = logits[np.arange(len(chunk)), predicted][:, None] - logits  # 0 at ŷ itself
        num_classes = logits.shape[1]
        mean_distance = (margins * self.inverse_gap[predicted]).sum(axis=1) / (num_classes - 1)
        features = chunk.features.astype(np.float64)
        scale = _norms(features - self.global_mean if self.center else features)
        return np.divide(mean_distance, scale, out=np.zeros(len(chunk)), where=scale > 0)


class SHE(ncood.Scorer):
    """SHE, Simplified Hopfield Energy (Zhang et al., ICLR 2023): ⟨f, S_ŷ⟩.

    S_c, the stored pattern of class c, is the mean of the ID train features of class c that the
    network classifies correctly (all features of class c if it gets none right).
    """

    def fit(self, train: Split, head: Head) -> None:
        num_classes = train.logits.shape[1]
        labels = train.labels
        kept = predicted_classes(train) == labels  # streamed, not the mapped N×C at once
        missing = np.bincount(labels[kept], minlength=num_classes) == 0
        kept |= missing[labels]  # a class never classified right falls back to all its samples
        counts = np.bincount(labels[kept], minlength=num_classes)

        def sums(chunk) -> tuple[np.ndarray]:
            rows = kept[chunk.rows]
            return (class_sums(chunk.features[rows], chunk.labels[rows], num_classes),)

        (total,) = fold_chunks(train, sums, ("features", "labels"))
        self.patterns = total / np.maximum(counts, 1)[:, None]

    def score(self, split: Split) -> np.ndarray:
        def block(chunk) -> np.ndarray:
            patterns = self.patterns[predicted_classes(chunk.logits)]
            return np.einsum("ij,ij->i", chunk.features.astype(np.float64), patterns)

        return map_rows(split, block, ("features", "logits"))


@ncood.hookimpl
def register_scorers(register):
    register(
        "nci",
        NCI,
        "proximity to the predicted class's weight + α·L1 norm",
        title="NCI",
        family="feature",
    )
    register(
        "fdbd",
        FDBD,
        "mean distance to the decision boundaries / ‖f − μ_G‖",
        title="fDBD",
        family="feature",
    )
    register(
        "she",
        SHE,
        "inner product with the predicted class's stored pattern",
        title="SHE",
        family="feature",
    )
