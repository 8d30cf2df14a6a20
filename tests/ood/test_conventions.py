"""Score orientation and the metrics' sides, on hand-computed cases."""

import numpy as np
import pytest

from ncood.ood.conventions import fpr_at_recall, ood_metrics


def test_perfect_separation_with_id_higher():
    m = ood_metrics(np.array([3.0, 4.0, 5.0]), np.array([0.0, 1.0]))
    assert m == {"auroc": 1.0, "aupr_in": 1.0, "aupr_out": 1.0, "fpr95": 0.0}


def test_reversed_orientation_gives_auroc_zero():
    m = ood_metrics(np.array([0.0, 1.0]), np.array([3.0, 4.0, 5.0]))
    assert m["auroc"] == 0.0
    assert m["fpr95"] == 1.0


def test_hand_computed_auroc():
    # ID {1, 3}, OOD {2, 0}: pairs (ID > OOD) = (1>0), (3>2), (3>0) = 3 of 4.
    assert ood_metrics(np.array([1.0, 3.0]), np.array([2.0, 0.0]))["auroc"] == pytest.approx(0.75)


def test_fpr95_counts_ood_accepted_at_95_percent_id_recall():
    id_scores = np.arange(100, dtype=float)  # threshold keeping 95 % of ID: score >= 5
    ood_scores = np.array([4.5, 5.5, 50.0, 200.0])  # three of four are >= 5
    assert fpr_at_recall(id_scores, ood_scores) == pytest.approx(0.75)


def test_fpr95_takes_the_first_threshold_on_a_straight_stretch_of_the_curve():
    # ID and OOD share every value: the curve is one straight line, which sklearn's default
    # roc_curve reduces to its end points; the threshold score >= 5 accepts 95 of 100 OOD.
    scores = np.arange(100.0)
    assert fpr_at_recall(scores, scores) == pytest.approx(0.95)


def test_empty_sets_are_refused():
    with pytest.raises(ValueError):
        ood_metrics(np.array([]), np.array([1.0]))


@pytest.mark.parametrize("case", ["continuous", "ties", "float32", "tiny", "separated"])
def test_metrics_equal_scikit_learns_to_the_last_bit(case):
    """The NumPy curves are scikit-learn's, operation for operation (the slow reference)."""
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

    from ncood.ood.conventions import roc_points, threshold_at_recall

    rng = np.random.default_rng(7)
    id_scores, ood_scores = rng.normal(1.0, 1.0, 3000), rng.normal(0.0, 1.3, 1700)
    if case == "ties":  # few distinct values: whole groups share a threshold
        id_scores, ood_scores = np.round(id_scores, 1), np.round(ood_scores, 1)
    elif case == "float32":
        id_scores, ood_scores = id_scores.astype(np.float32), ood_scores.astype(np.float32)
    elif case == "tiny":
        id_scores, ood_scores = np.array([0.3, 0.3, 0.9]), np.array([0.3, 0.1])
    elif case == "separated":
        ood_scores = ood_scores - 20.0
    is_id = np.concatenate([np.ones(len(id_scores)), np.zeros(len(ood_scores))])
    scores = np.concatenate([id_scores, ood_scores]).astype(np.float64)
    fpr, tpr, thresholds = roc_curve(is_id, scores, drop_intermediate=False)  # FPR@95's curve
    index = np.searchsorted(tpr, 0.95, side="left")
    expected = {
        "auroc": float(roc_auc_score(is_id, scores)),
        "aupr_in": float(average_precision_score(is_id, scores)),
        "aupr_out": float(average_precision_score(1 - is_id, -scores)),
        "fpr95": float(fpr[index]),
    }
    assert ood_metrics(id_scores, ood_scores) == expected  # exact, not approx
    assert threshold_at_recall(id_scores, ood_scores) == thresholds[index]
    fpr, tpr, _ = roc_curve(is_id, scores)  # the plotted curve: sklearn's default
    ours_fpr, ours_tpr = roc_points(id_scores, ood_scores)
    assert np.array_equal(ours_fpr, fpr) and np.array_equal(ours_tpr, tpr)


def test_non_finite_scores_are_refused():
    with pytest.raises(ValueError, match="finite"):
        ood_metrics(np.array([1.0, np.nan]), np.array([0.0]))
