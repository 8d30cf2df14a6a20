"""--ood groups: parsing, checks, and group means with bootstrap intervals."""

import numpy as np
import pytest

from ncood.errors import NcoodError
from ncood.ood.bootstrap import id_resamples, intervals, resampled_metrics
from ncood.ood.conventions import ood_metrics
from ncood.ood.groups import check_available, group_summary, parse_ood


def test_parse_the_openood_form_and_plain_lists():
    parsed = parse_ood(["near:cifar10,tin far:svhn,mnist,dtd"])
    assert parsed.sets == ["cifar10", "tin", "svhn", "mnist", "dtd"]
    assert parsed.groups == {"near": ["cifar10", "tin"], "far": ["svhn", "mnist", "dtd"]}
    assert parse_ood(["near:a", "far:b,c"]).groups == {"near": ["a"], "far": ["b", "c"]}
    plain = parse_ood(["photos,noise"])
    assert plain.sets == ["photos", "noise"] and plain.groups == {}
    for bad in [["near:a far:a"], ["near:a near:b"], ["near:"], ["1x:a"], [""]]:
        with pytest.raises(NcoodError):
            parse_ood(bad)
    with pytest.raises(NcoodError, match="not in the features"):
        check_available(parsed, ["cifar10", "svhn"])


def test_group_mean_and_its_interval_come_from_paired_resamples():
    rng = np.random.default_rng(0)
    id_scores = {"a": rng.normal(1, 1, 200), "b": rng.normal(0.5, 1, 200)}
    oods = {
        "x": {"a": rng.normal(0, 1, 150), "b": rng.normal(0, 1, 150)},
        "y": {"a": rng.normal(-1, 1, 180), "b": rng.normal(0, 1, 180)},
    }
    counts = id_resamples(0, 300, 200)
    resampled = {
        o: resampled_metrics(id_scores, s, resamples=300, ood_name=o, id_counts=counts)
        for o, s in oods.items()
    }
    per_set = {o: {k: ood_metrics(id_scores[k], s[k]) for k in s} for o, s in oods.items()}
    summary = group_summary(per_set, ["x", "y"], resampled)
    for scorer in ("a", "b"):
        mean = (per_set["x"][scorer]["auroc"] + per_set["y"][scorer]["auroc"]) / 2
        assert summary[scorer]["auroc"] == pytest.approx(mean)
        lo, hi = summary[scorer]["auroc_ci"]  # the percentiles of the resampled group means
        assert lo <= hi
        set_ci = [intervals(resampled[o])[scorer]["auroc"] for o in ("x", "y")]
        expected = np.quantile(
            (resampled["x"][scorer][:, 0] + resampled["y"][scorer][:, 0]) / 2, [0.025, 0.975]
        )
        np.testing.assert_allclose([lo, hi], expected)
        # averaging two sets narrows the interval below the wider set's
        assert hi - lo < max(b - a for a, b in set_ci)
