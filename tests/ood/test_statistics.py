"""Intervals, p-values and group means written beside the results."""

import numpy as np
import pytest

from ncood.ood.conventions import ood_metrics
from ncood.ood.statistics import add_statistics


def scored(seed=0):
    rng = np.random.default_rng(seed)
    test = rng.normal(0, 1, 300)
    sets = {"near": rng.normal(-0.3, 1, 200), "far": rng.normal(-2, 1, 250)}
    scores = {
        "good": {"test": test + 1.0, **{f"ood/{k}": v for k, v in sets.items()}},
        "twin": {"test": 2 * (test + 1.0), **{f"ood/{k}": 2 * v for k, v in sets.items()}},
        "poor": {
            "test": rng.normal(0, 1, 300),
            **{f"ood/{k}": rng.normal(0, 1, len(v)) for k, v in sets.items()},
        },
    }
    results = {
        "ood": {
            o: {s: ood_metrics(scores[s]["test"], scores[s][f"ood/{o}"]) for s in scores}
            for o in sets
        },
        "params": {},
    }
    return results, scores


def test_intervals_pvalues_and_groups_beside_the_values():
    results, scores = scored()
    add_statistics(results, scores, resamples=200, seed=4, groups={"all": ["near", "far"]})
    for ood, per_scorer in results["ood"].items():
        for scorer, metrics in per_scorer.items():
            for metric in ("auroc", "aupr_in", "aupr_out", "fpr95"):
                # a percentile interval need not hold the point estimate: ordered, in [0, 1]
                lo, hi = metrics[f"{metric}_ci"]
                assert 0.0 <= lo <= hi <= 1.0, (ood, scorer, metric)
    assert results["params"]["bootstrap"]["resamples"] == 200
    assert results["params"]["bootstrap"]["seed"] == 4
    far = results["significance"]["ood"]["far"]
    assert far["pairs"]["good"]["twin"] == 1.0  # the same ranking
    assert far["pairs"]["good"]["poor"] == far["pairs"]["poor"]["good"] < 1e-6
    assert far["best"] in ("good", "twin")
    assert set(far["indistinguishable"]) == {"good", "twin"}
    assert results["significance"]["correction"] == "holm"
    group = results["ood_groups"]["all"]
    assert group["sets"] == ["near", "far"]
    mean = (results["ood"]["near"]["good"]["auroc"] + results["ood"]["far"]["good"]["auroc"]) / 2
    assert group["scorers"]["good"]["auroc"] == pytest.approx(mean)
    lo, hi = group["scorers"]["good"]["auroc_ci"]
    assert 0.0 <= lo <= hi <= 1.0  # its percentiles are tested in test_groups
    # the same seed gives the same intervals
    again, scores = scored()
    add_statistics(again, scores, resamples=200, seed=4, groups={"all": ["near", "far"]})
    assert again["ood"] == results["ood"]


def test_without_bootstrap_there_are_no_intervals_but_still_p_values():
    results, scores = scored()
    add_statistics(results, scores, resamples=0)
    assert "auroc_ci" not in results["ood"]["far"]["good"]
    assert "bootstrap" not in results["params"]
    assert "far" in results["significance"]["ood"]
