"""How to test a scorer plugin: run ncood's contract on it (``ncood.testing.check_scorer``),
register it on a private plugin host, run it through ncood's own analysis on a small
constructed dump, and check its orientation and its formula."""

from __future__ import annotations

import ncood_example_scorer
import numpy as np
import pytest

from ncood.analyze.driver import analyze_dump
from ncood.host.loading import PluginHost
from ncood.store.features import FeatureDump, Head, Split
from ncood.testing import check_scorer


@pytest.fixture
def host() -> PluginHost:
    """A host holding only this plugin, whatever else is installed."""
    plugin_host = PluginHost()
    plugin_host.add(
        ncood_example_scorer,
        "example_scorer",
        distribution="ncood-example-scorer",
        version="test",
        builtin=False,
    )
    return plugin_host


def constructed_dump(seed: int = 0) -> FeatureDump:
    """ID features of norm about 10, OOD features of norm about 2: featnorm must rank ID first."""
    rng = np.random.default_rng(seed)
    weight, bias = rng.normal(size=(3, 16)).astype(np.float32), np.zeros(3, np.float32)

    def split(n: int, radius: float, labels: np.ndarray) -> Split:
        directions = rng.normal(size=(n, 16))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        features = (directions * rng.normal(radius, 0.5, (n, 1))).astype(np.float32)
        return Split(features, features @ weight.T + bias, labels)

    return FeatureDump(
        train=split(60, 10.0, np.arange(60) % 3),
        test=split(30, 10.0, np.arange(30) % 3),
        ood={"small": split(40, 2.0, np.full(40, -1))},
        head=Head(weight, bias),
    )


def test_it_keeps_the_scorer_contract():
    """Every rule of ncood's scorer contract: float64 output, ID above OOD, deterministic, the
    same in pieces as whole, bad input scored or refused in one line."""
    check_scorer(ncood_example_scorer.FeatureNorm)
    check_scorer(ncood_example_scorer.FeatureNorm, p=2.0)


def test_registered_with_its_parameters(host):
    contribution = host.scorers().get("featnorm")
    assert contribution.display == "Feature norm"
    assert contribution.defaults() == {"p": 1.0, "sign": 1}


def test_in_distribution_wins(host):
    outcome = analyze_dump(constructed_dump(), [host.scorers().get("featnorm")], [])
    assert outcome.results["errors"] == {}
    assert outcome.results["ood"]["small"]["featnorm"]["auroc"] > 0.95


def test_formula_by_hand(host):
    scorer, params = host.scorers().get("featnorm").build({"p": "2"})
    train = Split(np.array([[3, 4], [0, 5]], np.float32), np.zeros((2, 1)), np.zeros(2, int))
    scorer.fit(train, None)  # mean train norm = 5
    test = Split(np.array([[6, 8]], np.float32), np.zeros((1, 1)), np.zeros(1, int))
    np.testing.assert_allclose(scorer.score(test), [(10 / 5) ** 2])
    assert params == {"p": 2.0, "sign": 1}
