"""The score and metric conventions, written down once.

* Every OOD score is oriented **higher = more in-distribution**.
* AUROC, AUPR-In: in-distribution is the positive class.
* AUPR-Out: OOD is the positive class, scored by the negated score.
* FPR@95: share of OOD samples accepted (score ≥ threshold) when the threshold keeps
  95 % of in-distribution samples (ID recall = TPR = 0.95).

The metric values come from scikit-learn; this module only fixes which side is which.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

ID_RECALL = 0.95


def _labelled(id_scores: np.ndarray, ood_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.concatenate([np.asarray(id_scores, np.float64), np.asarray(ood_scores, np.float64)])
    is_id = np.concatenate([np.ones(len(id_scores)), np.zeros(len(ood_scores))])
    return is_id, scores


def _at_recall(id_scores: np.ndarray, ood_scores: np.ndarray, recall: float):
    """(FPR, threshold) at the first ROC point whose ID recall (TPR) reaches ``recall``.

    Every threshold is kept (``drop_intermediate=False``): sklearn's default drops points on a
    straight stretch of the curve, and the first one kept past ``recall`` can lie further on.
    """
    is_id, scores = _labelled(id_scores, ood_scores)
    fpr, tpr, thresholds = roc_curve(is_id, scores, drop_intermediate=False)
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
        "auroc": float(roc_auc_score(is_id, scores)),
        "aupr_in": float(average_precision_score(is_id, scores)),
        "aupr_out": float(average_precision_score(1 - is_id, -scores)),
        "fpr95": fpr_at_recall(id_scores, ood_scores),
    }


def roc_points(id_scores: np.ndarray, ood_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) of the ROC curve with ID positive, for plotting."""
    is_id, scores = _labelled(id_scores, ood_scores)
    fpr, tpr, _ = roc_curve(is_id, scores)
    return fpr, tpr
