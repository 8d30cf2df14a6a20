"""Orientation: on a constructed collapsed case every scorer ranks ID above OOD, and the
Mahalanobis regression — the TP's AUROC 0.149 was a sign error, never a property of the data."""

from __future__ import annotations

import numpy as np
import pytest

from ncood.analyze.driver import analyse_dump, select
from ncood.host.loading import host
from ncood.ood.conventions import ood_metrics
from ncood.store.features import FeatureDump, Head, Split

ALL_SCORERS = [
    "msp", "maxlogit", "energy", "gen", "mahalanobis", "l2", "rmds",
    "vim", "neco", "knn", "react", "nci", "fdbd", "she",
    "entropy", "klm", "tscaling", "webo", "dice", "ash-p", "ash-b", "ash-s", "scale", "vra",
    "gradnorm", "nnguide", "gmm", "openmax",
]  # fmt: skip


def collapsed_dump(
    num_classes: int = 5, dim: int = 64, per_class: int = 80, ood_count: int = 200, seed: int = 0
) -> FeatureDump:
    """Non-negative (post-ReLU) features: each ID class a dense random pattern μ_c plus small
    noise, the head aligned with the centred means (as neural collapse makes it); each OOD
    sample a fresh random pattern from the same distribution, close to no class."""
    rng = np.random.default_rng(seed)

    def pattern(n: int) -> np.ndarray:
        return np.maximum(rng.normal(1.0, 1.5, (n, dim)), 0.0)

    means = pattern(num_classes)
    weight = (means - means.mean(axis=0)).astype(np.float32) / 3
    bias = np.zeros(num_classes, np.float32)

    def make(centres: np.ndarray, labels: np.ndarray) -> Split:
        features = np.maximum(centres + rng.normal(0, 0.3, centres.shape), 0).astype(np.float32)
        return Split(features, features @ weight.T + bias, labels)

    def in_distribution(n: int) -> Split:
        labels = np.repeat(np.arange(num_classes), n)
        return make(means[labels], labels)

    return FeatureDump(
        in_distribution(per_class),
        in_distribution(per_class // 2),
        {"far": make(pattern(ood_count), np.full(ood_count, -1))},
        Head(weight, bias),
    )


@pytest.fixture(scope="module")
def outcome():
    scorers, _ = select(host(), ALL_SCORERS)
    return analyse_dump(collapsed_dump(), scorers, [])


def test_every_builtin_scorer_is_covered():
    assert sorted(host().scorers().names()) == sorted(ALL_SCORERS)


# Correctly oriented (far above 0.5; a sign error would give 1 − AUROC) but weaker here by
# their definition, which their pytorch-ood peers share (tests/test_scorers_peers.py): DICE's
# sparsified head and GradNorm's ‖p − u‖₁‖f‖₁ see little of the class patterns; OpenMax's
# Weibull CDF saturates at 1 for ID and OOD samples alike beyond the fitted tail (FPR@95 1).
WEAKER = {"dice": (0.9, 0.3), "gradnorm": (0.7, 0.6), "openmax": (0.9, 1.0)}


@pytest.mark.parametrize("name", ALL_SCORERS)
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
    outcome = analyse_dump(tiny_dump, scorers, [])
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
    outcome = analyse_dump(dump, scorers, [])
    assert outcome.results["errors"] == {}
    assert outcome.results["ood"]["far"]["mahalanobis"]["auroc"] > 0.95
