"""Scorers that compare the feature with the mean of its class: MaxCosine, CARef and CADRef.

Under neural collapse the features of a class gather at its mean; a feature far from every
class mean (in angle, or relative to its own size) is unlike the ID train data.
"""

from __future__ import annotations

import numpy as np

import ncood
from ncood.errors import NcoodError
from ncood.maths.stats import (
    class_sums,
    head_arrays,
    logsumexp_rows,
    predicted_classes,
    require_every_class,
)
from ncood.store.chunked import fold_chunks, map_rows
from ncood.store.features import Head, Split


def grouped_means(split: Split, groups: np.ndarray, num_classes: int) -> tuple[np.ndarray, ...]:
    """(C×D float64 means, C counts) of the features grouped by ``groups`` (one class a row),
    streamed; the mean of an empty group is 0."""

    def sums(chunk) -> tuple[np.ndarray, np.ndarray]:
        rows = groups[chunk.rows]
        return (
            class_sums(chunk.features, rows, num_classes),
            np.bincount(rows, minlength=num_classes)[:num_classes].astype(np.float64),
        )

    total, counts = fold_chunks(split, sums, ("features",))
    return total / np.maximum(counts, 1.0)[:, None], counts


class MaxCosine(ncood.Scorer):
    """max_c cos(f, μ_c): the nearest class mean in angle (NC4's nearest-class-mean rule with
    the cosine), μ_c from the true labels; with ``center``, both about the global mean μ_G."""

    def __init__(self, center: bool = False) -> None:
        self.center = center

    def fit(self, train: Split, head: Head) -> None:
        num_classes = train.logits.shape[1]
        means, counts = grouped_means(train, train.labels, num_classes)
        require_every_class(counts)
        self.origin = (counts @ means) / counts.sum() if self.center else np.zeros(means.shape[1])
        directions = means - self.origin
        lengths = np.linalg.norm(directions, axis=1)
        self.directions = np.divide(
            directions, lengths[:, None], out=np.zeros_like(directions), where=lengths[:, None] > 0
        )

    def score(self, split: Split) -> np.ndarray:
        def block(chunk) -> np.ndarray:
            features = chunk.features.astype(np.float64) - self.origin
            lengths = np.linalg.norm(features, axis=1)
            cosines = (features @ self.directions.T).max(axis=1)
            return np.divide(cosines, lengths, out=np.zeros(len(chunk)), where=lengths > 0)

        return map_rows(split, block, ("features",))


class CARef(ncood.Scorer):
    """CARef (Ling et al., CVPR 2025): −‖f − μ_ŷ‖₁ / ‖f‖₁, the error of the feature relative
    to the mean of its predicted class.

    As the authors' code, μ_c is the mean of the ID train features the network *predicts* as c
    (all of them, right or wrong); a class it never predicts falls back to the mean of the
    train features labelled c (an early checkpoint), and their number is recorded.
    """

    def fit(self, train: Split, head: Head) -> None:
        num_classes = train.logits.shape[1]
        means, counts = grouped_means(train, predicted_classes(train), num_classes)
        unpredicted = counts == 0
        if unpredicted.any():
            by_label, label_counts = grouped_means(train, train.labels, num_classes)
            require_every_class(counts + label_counts)
            means[unpredicted] = by_label[unpredicted]
        self.means = means
        # ‖f‖₁ = 0 (every unit silent) would divide by zero: the floor keeps such a feature's
        # relative error large and finite.
        self.floor = 1e-12 * max(float(np.abs(counts @ means).sum() / len(train)), 1.0)
        self.resolved_params = {"classes_from_labels": int(unpredicted.sum())}

    def deviation(self, chunk) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(f − μ_ŷ, ‖f‖₁ floored, ŷ) of a chunk."""
        features = chunk.features.astype(np.float64)
        predicted = predicted_classes(chunk.logits)
        size = np.maximum(np.abs(features).sum(axis=1), self.floor)
        return features - self.means[predicted], size, predicted

    def score(self, split: Split) -> np.ndarray:
        def block(chunk) -> np.ndarray:
            offset, size, _ = self.deviation(chunk)
            return -np.abs(offset).sum(axis=1) / size

        return map_rows(split, block, ("features", "logits"))


def gen_confidence(logits: np.ndarray, gamma: float = 0.1) -> np.ndarray:
    """1 / Σ_{top M} p^γ (1 − p)^γ, M = max(C // 10, 10) (all C when C ≤ 10): GEN as the
    CADRef code writes it, a positive confidence."""
    values = np.asarray(logits, np.float64)
    shifted = values - values.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    probs /= probs.sum(axis=1, keepdims=True)
    top = max(values.shape[1] // 10, 10)
    kept = np.sort(probs, axis=1)[:, -top:]
    # 1 − p rounds to 0 for p within 1e-16 of 1: every term 0 needs all the others to underflow
    # too, a logit gap above 745; the floor keeps that score finite (very confident).
    spread = np.sum(kept**gamma * (1 - kept) ** gamma, axis=1)
    return 1.0 / np.maximum(spread, np.finfo(np.float64).tiny)


def softmax_peak(logits: np.ndarray) -> np.ndarray:
    values = np.asarray(logits, np.float64)
    return np.exp(values.max(axis=1) - logsumexp_rows(values))


LOGIT_SCORES = {
    "energy": logsumexp_rows,
    "msp": softmax_peak,
    "maxlogit": lambda logits: np.asarray(logits, np.float64).max(axis=1),
    "gen": gen_confidence,
}


class CADRef(CARef):
    """CADRef (Ling et al., CVPR 2025): the relative error split by the sign of the predicted
    class's weights, −(E⁺(f) / S(z) + E⁻(f) / S̄).

    With s = sign(w_ŷ) and d = f − μ_ŷ: E⁺ = ‖max(d ⊙ s, 0)‖₁ / ‖f‖₁ (the error that raises the
    logit of ŷ), E⁻ = ‖max(−d ⊙ s, 0)‖₁ / ‖f‖₁; S is a logit score of the sample (``logit``:
    energy, the authors' default; msp, maxlogit or gen) and S̄ its mean over ID train.
    """

    def __init__(self, logit: str = "energy") -> None:
        if logit not in LOGIT_SCORES:
            raise ValueError(
                f"cadref.logit must be one of {', '.join(LOGIT_SCORES)}, got {logit!r}"
            )
        self.logit = logit

    def fit(self, train: Split, head: Head) -> None:
        super().fit(train, head)
        weight, _ = head_arrays(head)
        self.signs = np.sign(weight)
        confidence = LOGIT_SCORES[self.logit]
        (total,) = fold_chunks(train, lambda c: (confidence(c.logits).sum(),), ("logits",))
        self.mean_confidence = float(total / len(train))
        if not self.mean_confidence:
            raise NcoodError(
                f"the mean {self.logit} of the ID train logits is 0: cadref divides by it"
            )
        self.resolved_params["mean_logit_score"] = self.mean_confidence

    def score(self, split: Split) -> np.ndarray:
        confidence = LOGIT_SCORES[self.logit]

        def block(chunk) -> np.ndarray:
            offset, size, predicted = self.deviation(chunk)
            aligned = offset * self.signs[predicted]
            raising = np.maximum(aligned, 0).sum(axis=1) / size
            lowering = np.maximum(-aligned, 0).sum(axis=1) / size
            return -(raising / confidence(chunk.logits) + lowering / self.mean_confidence)

        return map_rows(split, block, ("features", "logits"))


@ncood.hookimpl
def register_scorers(register):
    register(
        "maxcosine",
        MaxCosine,
        "largest cosine between the feature and a class mean",
        title="MaxCosine",
        family="feature",
    )
    register(
        "caref",
        CARef,
        "minus the L1 error to the predicted class's mean, relative to the feature's L1 norm",
        title="CARef",
        family="feature",
    )
    register(
        "cadref",
        CADRef,
        "CARef's error split by the sign of the class weights, over a logit score",
        title="CADRef",
        family="feature",
    )
