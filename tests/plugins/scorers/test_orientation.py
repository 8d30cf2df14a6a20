"""Orientation: on the contract's collapsed case (ncood.testing) every feature scorer ranks ID
well above OOD (the contract asks less of a third-party one), and the
Mahalanobis regression — the TP's AUROC 0.149 was a sign error, never a property of the data."""

from __future__ import annotations

import numpy as np
import pytest

import ncood
from ncood.analyze.driver import analyze_dump, select
from ncood.host.loading import host
from ncood.ood.conventions import ood_metrics
from ncood.testing import collapsed_dump

# Every feature scorer of one run (the network ones run on the network, the ensemble ones on
# several runs: test_scorer_contract.py)
ON_FEATURES = ncood.list_scorers(needs_network=False, needs_members=False)


@pytest.fixture(scope="module")
def outcome():
    scorers, _ = select(host(), ON_FEATURES)
    return analyze_dump(collapsed_dump(), scorers, [])


# Correctly oriented (far above 0.5; a sign error would give 1 − AUROC) but weaker here by
# their definition, which their pytorch-ood peers share (test_peers.py beside this): DICE's
# sparsified head, GradNorm's ‖p − u‖₁‖f‖₁ and GradUncertainty's ‖Cp − 1‖²(‖f‖² + 1) see
# little of the class patterns; OpenMax's Weibull CDF saturates at 1 for ID and OOD samples
# alike beyond the fitted tail (FPR@95 1).
WEAKER = {
    "dice": (0.9, 0.3),
    "gradnorm": (0.7, 0.6),
    "graduncertainty": (0.7, 0.6),
    "openmax": (0.9, 1.0),
}


@pytest.mark.parametrize("name", ON_FEATURES)
def test_id_wins(outcome, name):
    assert outcome.results["errors"] == {}
    metrics = outcome.results["ood"]["far"][name]
    auroc, fpr95 = WEAKER.get(name, (0.95, 0.2))
    assert metrics["auroc"] > auroc, metrics
    assert metrics["fpr95"] <= fpr95, metrics


@pytest.mark.parametrize("name", ["mahalanobis", "l2", "rmds"])
def test_mahalanobis_regression_tp_sign_error(tiny_dump, name):
    """ID clusters far from the origin, OOD at the origin: separable. A correct (negated)
    distance gives AUROC near 1; the TP's positive distance gives 1 − AUROC (its 0.149)."""
    scorers, _ = select(host(), [name])
    outcome = analyze_dump(tiny_dump, scorers, [])
    auroc = outcome.results["ood"]["blobs"][name]["auroc"]
    assert auroc > 0.95
    sign_error = ood_metrics(-outcome.scores[name]["test"], -outcome.scores[name]["ood/blobs"])
    assert sign_error["auroc"] == pytest.approx(1 - auroc)
    assert sign_error["auroc"] < 0.2  # the TP's symptom, produced only by the flipped sign


def test_mahalanobis_on_post_relu_features_with_dead_units():
    """Real penultimate features have units that never fire; the ridge keeps the tied
    covariance invertible and the orientation right."""
    dump = collapsed_dump()
    dead = np.zeros(64, bool)
    dead[-4:] = True
    for split in [dump.train, dump.test]:
        split.features[:, dead] = 0.0
    scorers, _ = select(host(), ["mahalanobis", "rmds"])
    outcome = analyze_dump(dump, scorers, [])
    assert outcome.results["errors"] == {}
    assert outcome.results["ood"]["far"]["mahalanobis"]["auroc"] > 0.95
