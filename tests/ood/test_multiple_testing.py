"""Holm's correction and the comparison with the best scorer."""

import numpy as np
import pytest

from ncood.ood.delong import pairwise_pvalues
from ncood.ood.multiple_testing import compare_with_best, holm


def test_holm_on_a_hand_computed_family():
    # sorted 0.005, 0.01, 0.03, 0.04 → ×4, ×3, ×2, ×1 = 0.02, 0.03, 0.06, 0.04 → running max
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]).tolist() == [1.0, 1.0]  # capped at 1
    assert holm([]).size == 0


def test_best_and_the_scorers_it_cannot_be_told_from():
    rng = np.random.default_rng(4)
    base_id, base_ood = rng.normal(1.2, 1, 800), rng.normal(0, 1, 800)
    x = np.stack(
        [
            base_id + rng.normal(0, 0.05, 800),  # best
            base_id + rng.normal(0, 0.05, 800),  # the same up to noise
            rng.normal(0.3, 1, 800),  # much worse
        ]
    )
    y = np.stack(
        [
            base_ood + rng.normal(0, 0.05, 800),
            base_ood + rng.normal(0, 0.05, 800),
            rng.normal(0, 1, 800),
        ]
    )
    auroc, p = pairwise_pvalues(x, y)
    names = ["a", "b", "c"]
    verdict = compare_with_best(names, auroc, p)
    assert verdict["best"] == names[int(np.argmax(auroc))]
    assert set(verdict["indistinguishable"]) == {"a", "b"}
    assert verdict["indistinguishable"][0] == verdict["best"]
    assert verdict["p_adjusted"]["c"] < 1e-6
    assert verdict["correction"] == "holm" and verdict["alpha"] == pytest.approx(0.05)
    assert set(verdict["p"]) == set(names) - {verdict["best"]}


def test_a_tie_for_the_best_goes_to_the_name_that_sorts_first_whatever_the_order():
    auroc = np.array([1.0, 1.0, 0.6])
    pvalues = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    names = ["msp", "energy", "poor"]
    verdict = compare_with_best(names, auroc, pvalues)
    assert verdict["best"] == "energy"
    assert verdict["indistinguishable"] == ["energy", "msp"]
    for order in ([1, 0, 2], [2, 1, 0], [2, 0, 1]):  # the same scorers, listed otherwise
        shuffled = compare_with_best(
            [names[k] for k in order], auroc[order], pvalues[np.ix_(order, order)]
        )
        assert shuffled == verdict


def test_holm_rejects_an_adjusted_p_equal_to_alpha():
    """Holm rejects at adjusted p ≤ α: 2 × 0.025 is exactly 0.05 in float64, so "weaker" is
    rejected (told apart from the best); just above (adjusted 0.05 + 1e-12) it is not."""
    assert holm([0.025])[0] * 2 == 0.05 and holm([0.025, 0.9]).tolist() == [0.05, 0.9]
    names = ["best", "weaker", "other"]
    auroc = np.array([0.9, 0.8, 0.7])
    pvalues = np.ones((3, 3))
    pvalues[0, 1] = pvalues[1, 0] = 0.025
    pvalues[0, 2] = pvalues[2, 0] = 0.9
    verdict = compare_with_best(names, auroc, pvalues)
    assert verdict["p_adjusted"] == {"weaker": 0.05, "other": 0.9}
    assert verdict["indistinguishable"] == ["best", "other"]
    pvalues[0, 1] = pvalues[1, 0] = 0.025 + 5e-13
    assert compare_with_best(names, auroc, pvalues)["indistinguishable"] == [
        "best",
        "weaker",
        "other",
    ]
