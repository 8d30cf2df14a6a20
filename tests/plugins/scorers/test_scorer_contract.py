"""The scorer contract (ncood.testing.check_scorer, scikit-learn's ``parametrize_with_checks``):
every registered scorer, feature-level and network alike, keeps every rule; and each rule
catches the scorer that breaks it, with a failure that names the rule."""

from __future__ import annotations

import numpy as np
import pytest

import ncood
from ncood.errors import NcoodError
from ncood.testing import RULES, ScorerCheckFailed, check_scorer

# Rules a built-in cannot keep on the constructed cases, and why. RankFeat removes each map's
# rank-1 part; the tiny CNN's 16 × 4 × 4 last maps are close to rank 1, so what remains says
# nothing of the class (its orientation is checked against pytorch-ood's in
# tests/plugins/scorers/test_network_scorers.py instead).
EXEMPT = {("rankfeat", "orientation")}

CASES = [
    pytest.param(name, rule, id=f"{name}-{rule}")
    for name in ncood.list_scorers()
    for rule in RULES
    if (name, rule) not in EXEMPT
]


@pytest.mark.parametrize(("name", "rule"), CASES)
def test_every_scorer_keeps_the_contract(name, rule):
    check_scorer(name, rules=(rule,))


def test_the_exemptions_name_registered_scorers_and_rules():
    for name, rule in EXEMPT:
        assert name in ncood.list_scorers() and rule in RULES


def test_network_scorers_are_checked_through_the_network():
    """create_scorer builds every scorer, network ones included, and the contract tells them
    apart by what the object says."""
    networked = ncood.list_scorers(needs_network=True)
    assert {"odin", "mcd", "gram", "rankfeat"} <= set(networked)
    assert not set(networked) & set(ncood.list_scorers(needs_network=False))
    odin = ncood.create_scorer("odin", eps=0.0)
    assert odin.needs_network and isinstance(odin, ncood.Scorer)
    assert not getattr(ncood.create_scorer("msp"), "needs_network", False)


# ---- each rule catches its breaker


class Base(ncood.Scorer):
    """Minus the distance to the nearest class mean of ID train (of the classes it has)."""

    def fit(self, train, head):
        features = train.features.astype(np.float64)
        self.means = np.stack(
            [features[train.labels == c].mean(axis=0) for c in np.unique(train.labels)]
        )

    def score(self, split):
        features = split.features.astype(np.float64)
        return -np.linalg.norm(features[:, None, :] - self.means[None], axis=2).min(axis=1)


class Flipped(Base):
    def score(self, split):
        return -super().score(split)


class Float32(Base):
    def score(self, split):
        return super().score(split).astype(np.float32)


class Unseeded(Base):
    def score(self, split):
        return super().score(split) + np.random.default_rng().normal(0, 1e-3, len(split))


class ScaledBySplitSize(Base):
    def score(self, split):
        return super().score(split) * len(split)  # the constructed splits are the same size


class IndexErrorOnMissingClass(Base):
    def fit(self, train, head):
        super().fit(train, head)
        self.per_class = [train.features[train.labels == c][0] for c in range(len(head.bias))]


class RefusesMissingClass(Base):
    def fit(self, train, head):
        super().fit(train, head)
        if len(np.unique(train.labels)) < len(head.bias):
            raise NcoodError("a class has no ID train samples")


@pytest.mark.parametrize(
    ("factory", "rule"),
    [
        (Flipped, "orientation"),
        (Float32, "output"),
        (Unseeded, "determinism"),
        (ScaledBySplitSize, "streamed"),
        (IndexErrorOnMissingClass, "bad_input"),
    ],
)
def test_each_rule_catches_its_breaker(factory, rule):
    check_scorer(Base)  # the scorer they derive from keeps every rule
    with pytest.raises(ScorerCheckFailed) as caught:
        check_scorer(factory)
    assert caught.value.rule == rule
    assert isinstance(caught.value, AssertionError) and rule in str(caught.value)


def test_a_one_line_refusal_of_bad_input_keeps_the_contract():
    check_scorer(RefusesMissingClass)


def test_parameters_reach_the_scorer_and_unknown_rules_are_refused():
    class Scaled(Base):
        def __init__(self, sign: float = 1.0) -> None:
            self.sign = sign

        def score(self, split):
            return self.sign * super().score(split)

    check_scorer(Scaled)
    with pytest.raises(ScorerCheckFailed, match="orientation"):
        check_scorer(Scaled, sign=-1.0)
    with pytest.raises(ValueError, match="unknown rules"):
        check_scorer(Scaled, rules=("speed",))


class NetworkFlipped(ncood.Scorer):
    """Minus the max softmax through the network: a network scorer with its sign flipped."""

    needs_network = True

    def score(self, network, split):
        import torch

        with torch.no_grad():
            probs = [network.logits(x).double().softmax(1).amax(1) for x, _ in split]
        return -torch.cat(probs)


def test_a_network_scorer_is_checked_on_the_tiny_network():
    with pytest.raises(ScorerCheckFailed) as caught:
        check_scorer(NetworkFlipped)
    assert caught.value.rule == "orientation"
    check_scorer(NetworkFlipped, rules=("output", "determinism", "streamed", "bad_input"))


def test_a_scorer_that_disagrees_with_its_factory_fails():
    def factory():
        return NetworkFlipped()  # the function does not say needs_network

    with pytest.raises(ScorerCheckFailed, match="needs_network"):
        check_scorer(factory, rules=("output",))


def test_the_suite_is_reached_from_the_package_root_without_loading_at_import():
    import subprocess
    import sys

    code = (
        "import sys, ncood; assert 'ncood.testing' not in sys.modules; "
        "assert callable(ncood.testing.check_scorer) and 'ncood.testing' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_built_in_scorer_derives_from_the_one_base():
    from ncood.host.loading import host

    built_in = [c for _, c in host().scorers().items() if c.plugin.startswith("scorers.")]
    assert built_in
    for contribution in built_in:
        assert issubclass(contribution.factory, ncood.Scorer), contribution.name
