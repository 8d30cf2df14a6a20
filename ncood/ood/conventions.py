"""The score and metric conventions, written down once.

* Every OOD score is oriented **higher = more in-distribution**.
* AUROC, AUPR-In: in-distribution is the positive class.
* AUPR-Out: OOD is the positive class, scored by the negated score.
* FPR@95: share of OOD samples accepted (score ≥ threshold) when the threshold keeps
  95 % of in-distribution samples (ID recall = TPR = 0.95).

The curves are scikit-learn's (``roc_curve``, ``precision_recall_curve``, ``roc_auc_score``,
``average_precision_score``), written again in NumPy with the same operations in the same order,
so the values are identical to the last bit (tests/ood/test_conventions.py checks it against
scikit-learn): importing ``sklearn.metrics`` costs a second of ``scipy.stats`` before any work.
"""

from __future__ import annotations

import numpy as np

ID_RECALL = 0.95


def _labelled(id_scores: np.ndarray, ood_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.concatenate([np.asarray(id_scores, np.float64), np.asarray(ood_scores, np.float64)])
    is_id = np.concatenate([np.ones(len(id_scores)), np.zeros(len(ood_scores))])
    return is_id, scores


def _counts_at_thresholds(positive: np.ndarray, scores: np.ndarray):
    """(false positives, true positives, threshold) at each distinct score, highest first:
    scikit-learn's ``confusion_matrix_at_thresholds`` for unweighted binary labels."""
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite")
    order = np.argsort(scores, kind="stable")[::-1]
    scores, positive = scores[order], positive[order]
    cuts = np.concatenate([np.nonzero(np.diff(scores))[0], [positive.size - 1]])
    tps = np.cumsum(positive, dtype=np.float64)[cuts]
    fps = 1 + cuts.astype(np.float64) - tps
    return fps, tps, scores[cuts]


def _roc_curve(positive: np.ndarray, scores: np.ndarray, drop_intermediate: bool = True):
    """(FPR, TPR, thresholds) as ``sklearn.metrics.roc_curve`` with the same options."""
    fps, tps, thresholds = _counts_at_thresholds(positive, scores)
    if drop_intermediate and fps.shape[0] > 2:  # drop the points collinear with their neighbours
        corners = np.logical_or(np.diff(fps, 2), np.diff(tps, 2))
        keep = np.nonzero(np.concatenate([[True], corners, [True]]))[0]
        fps, tps, thresholds = fps[keep], tps[keep], thresholds[keep]
    tps = np.concatenate([[0.0], tps])
    fps = np.concatenate([[0.0], fps])
    thresholds = np.concatenate([[np.inf], thresholds.astype(np.float64)])
    return fps / fps[-1], tps / tps[-1], thresholds


def _auroc(positive: np.ndarray, scores: np.ndarray) -> float:
    """Trapezoidal area under the ROC curve (``roc_auc_score``)."""
    fpr, tpr, _ = _roc_curve(positive, scores)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0, dtype=np.float64))


def _average_precision(positive: np.ndarray, scores: np.ndarray) -> float:
    """The step-function integral of the precision-recall curve (``average_precision_score``)."""
    fps, tps, _ = _counts_at_thresholds(positive, scores)
    precision = tps / (tps + fps)  # tps + fps ≥ 1 at every threshold
    recall = tps / tps[-1]
    precision = np.concatenate([precision[::-1], [1.0]])
    recall = np.concatenate([recall[::-1], [0.0]])
    return float(max(0.0, -np.sum(np.diff(recall) * precision[:-1])))


def _at_recall(id_scores: np.ndarray, ood_scores: np.ndarray, recall: float):
    """(FPR, threshold) at the first ROC point whose ID recall (TPR) reaches ``recall``.

    Every threshold is kept (``drop_intermediate=False``): sklearn's default drops points on a
    straight stretch of the curve, and the first one kept past ``recall`` can lie further on.
    """
    is_id, scores = _labelled(id_scores, ood_scores)
    fpr, tpr, thresholds = _roc_curve(is_id, scores, drop_intermediate=False)
    index = np.searchsorted(tpr, recall, side="left")
    return float(fpr[index]), float(thresholds[index])


def fpr_at_recall(
    id_scores: np.ndarray, ood_scores: np.ndarray, recall: float = ID_RECALL
) -> float:
    """Share of OOD accepted at the first threshold that keeps ``recall`` of ID."""
    return _at_recall(id_scores, ood_scores, recall)[0]


def threshold_at_recall(
    id_scores: np.ndarray, ood_scores: np.ndarray, recall: float = ID_RECALL
) -> float:
    """The score threshold of :func:`fpr_at_recall`: samples scoring ≥ it are accepted as ID."""
    return _at_recall(id_scores, ood_scores, recall)[1]


def ood_metrics(id_scores: np.ndarray, ood_scores: np.ndarray) -> dict[str, float]:
    """AUROC, AUPR-In, AUPR-Out and FPR@95 of one scorer on one ID/OOD pair."""
    if len(id_scores) == 0 or len(ood_scores) == 0:
        raise ValueError("both the ID and the OOD scores must be non-empty")
    is_id, scores = _labelled(id_scores, ood_scores)
    return {
        "auroc": _auroc(is_id, scores),
        "aupr_in": _average_precision(is_id, scores),
        "aupr_out": _average_precision(1 - is_id, -scores),
        "fpr95": fpr_at_recall(id_scores, ood_scores),
    }


def roc_points(id_scores: np.ndarray, ood_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) of the ROC curve with ID positive, for plotting."""
    is_id, scores = _labelled(id_scores, ood_scores)
    fpr, tpr, _ = _roc_curve(is_id, scores)
    return fpr, tpr
