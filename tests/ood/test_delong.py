"""DeLong's test (Sun & Xu's midrank algorithm) against the O(m·n) definition."""

import numpy as np
import pytest
from scipy.stats import norm

from ncood.ood.conventions import ood_metrics
from ncood.ood.delong import pairwise_pvalues, structural_components


def slow_delong(id_scores: np.ndarray, ood_scores: np.ndarray):
    """DeLong et al. (1988) literally: ψ over every (ID, OOD) pair, then the covariance."""
    k, m = id_scores.shape
    n = ood_scores.shape[1]
    psi = (id_scores[:, :, None] > ood_scores[:, None, :]) + 0.5 * (
        id_scores[:, :, None] == ood_scores[:, None, :]
    )  # (k, m, n)
    v10, v01 = psi.mean(axis=2), psi.mean(axis=1)
    auroc = psi.mean(axis=(1, 2))
    s10 = np.array(
        [
            [np.sum((v10[r] - auroc[r]) * (v10[s] - auroc[s])) / (m - 1) for s in range(k)]
            for r in range(k)
        ]
    )
    s01 = np.array(
        [
            [np.sum((v01[r] - auroc[r]) * (v01[s] - auroc[s])) / (n - 1) for s in range(k)]
            for r in range(k)
        ]
    )
    cov = s10 / m + s01 / n
    p = np.ones((k, k))
    for r in range(k):
        for s in range(k):
            if r != s:
                z = (auroc[r] - auroc[s]) / np.sqrt(cov[r, r] + cov[s, s] - 2 * cov[r, s])
                p[r, s] = 2 * norm.sf(abs(z))
    return auroc, v10, v01, cov, p


@pytest.mark.parametrize("tied", [False, True])
def test_equals_the_quadratic_reference(tied):
    rng = np.random.default_rng(3)
    for _ in range(20):
        k, m, n = rng.integers(2, 6), rng.integers(5, 60), rng.integers(5, 70)
        common_id, common_ood = rng.normal(0.8, 1, m), rng.normal(0, 1, n)
        x = common_id + rng.normal(0, 0.7, (k, m))  # correlated scorers, as in practice
        y = common_ood + rng.normal(0, 0.7, (k, n))
        if tied:
            x, y = np.round(x), np.round(y)
        auroc, v10, v01, cov, p = slow_delong(x, y)
        fast_auroc, fast_v10, fast_v01 = structural_components(x, y)
        np.testing.assert_allclose(fast_auroc, auroc, atol=1e-10, rtol=0)
        np.testing.assert_allclose(fast_v10, v10, atol=1e-10, rtol=0)
        np.testing.assert_allclose(fast_v01, v01, atol=1e-10, rtol=0)
        fast_auroc, fast_p = pairwise_pvalues(x, y)
        np.testing.assert_allclose(fast_p, p, atol=1e-10, rtol=0)
        for r in range(k):  # and the AUROC is ncood's AUROC
            assert fast_auroc[r] == pytest.approx(ood_metrics(x[r], y[r])["auroc"], abs=1e-12)


def test_identical_scorers_give_p_one():
    rng = np.random.default_rng(0)
    x, y = rng.normal(1, 1, 300), rng.normal(0, 1, 400)
    # the same scores, and a monotone transform of them: the same ranking
    _, p = pairwise_pvalues(np.stack([x, x, np.exp(x)]), np.stack([y, y, np.exp(y)]))
    np.testing.assert_array_equal(p, np.ones((3, 3)))


def test_clear_difference_gives_tiny_p_and_chance_differences_do_not():
    rng = np.random.default_rng(1)
    labels_id, labels_ood = rng.normal(0, 1, 2000), rng.normal(0, 1, 2000)
    good = np.concatenate([labels_id + 1.5, labels_ood])  # AUROC ≈ 0.86
    poor = np.concatenate([labels_id + 0.3, labels_ood]) + rng.normal(0, 1, 4000)  # ≈ 0.56
    x, y = np.stack([good[:2000], poor[:2000]]), np.stack([good[2000:], poor[2000:]])
    auroc, p = pairwise_pvalues(x, y)
    assert auroc[0] > auroc[1]
    assert p[0, 1] < 1e-6 and p[1, 0] == p[0, 1]
    # two scorers that only differ by independent noise of the same size: not significant
    base_id, base_ood = rng.normal(0.5, 1, 500), rng.normal(0, 1, 500)
    same_id = np.stack([base_id + rng.normal(0, 0.1, 500), base_id + rng.normal(0, 0.1, 500)])
    same_ood = np.stack([base_ood + rng.normal(0, 0.1, 500), base_ood + rng.normal(0, 0.1, 500)])
    assert pairwise_pvalues(same_id, same_ood)[1][0, 1] > 0.05


def test_type_one_error_is_near_alpha():
    """Under the null (two exchangeable scorers), p < 0.05 in about 5 % of 400 datasets."""
    rng = np.random.default_rng(2)
    rejected = 0
    for _ in range(400):
        base_id, base_ood = rng.normal(0.7, 1, 120), rng.normal(0, 1, 150)
        x = base_id + rng.normal(0, 0.6, (2, 120))
        y = base_ood + rng.normal(0, 0.6, (2, 150))
        rejected += pairwise_pvalues(x, y)[1][0, 1] < 0.05
    assert 0.025 <= rejected / 400 <= 0.08


def test_midranks_equal_scipys():
    """ncood.ood.delong.rankdata is scipy.stats.rankdata's average method, to the last bit."""
    from scipy.stats import rankdata as scipy_rankdata

    from ncood.ood.delong import rankdata

    rng = np.random.default_rng(3)
    for values in (
        rng.normal(size=(3, 500)),
        np.round(rng.normal(size=(4, 300)), 1),  # many ties
        rng.integers(0, 3, (2, 40)).astype(np.float64),
    ):
        assert np.array_equal(rankdata(values, axis=1), scipy_rankdata(values, axis=1))
