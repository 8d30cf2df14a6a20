"""The memory budget: a scorer's own estimate (``memory_bytes``) is checked before any fit, one
that exceeds ``--memory-budget`` is refused in one line and the others run; the built-in
estimates at ImageNet-1K's shape; the default share of the nearest-neighbour banks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_helpers import runner
from nc_builders import make_dump

import ncood
from ncood.analyze.driver import analyze_dump, select
from ncood.analyze.options import OodOptions
from ncood.cli import app
from ncood.errors import NcoodError
from ncood.host.loading import host
from ncood.host.memory_budget import GIB, budget_bytes, refusal
from ncood.host.scoring import Contribution, DumpShape, memory_estimate
from ncood.maths.bank import LARGE_TRAIN, bank_fraction, bank_size
from ncood.store.features import save_features

IMAGENET_1K = DumpShape(train=1_281_167, dim=2048, classes=1000, scored=50_000)


class Greedy(ncood.Scorer):
    """Says it needs ``gib`` GiB; records whether it was ever fitted."""

    fitted: list[str] = []

    def __init__(self, gib: float = 1.0) -> None:
        self.gib = gib

    def memory_bytes(self, shape: DumpShape) -> int:
        return int(self.gib * GIB)

    def fit(self, train, head) -> None:
        Greedy.fitted.append(f"{self.gib}")

    def score(self, split) -> np.ndarray:
        return np.asarray(split.features, np.float64).sum(axis=1)


def contribution(name: str) -> Contribution:
    return Contribution(name, Greedy, "test", "test", "scorer")


def test_a_scorer_over_the_budget_is_refused_before_any_fit_and_the_others_run(capsys):
    Greedy.fitted = []
    big, small = contribution("big"), contribution("small")
    settings = {"big": {"gib": "2.0"}, "small": {"gib": "0.5"}}
    outcome = analyze_dump(
        make_dump(), [big, small], [], settings, options=OodOptions(memory_budget=1.0)
    )
    assert Greedy.fitted == ["0.5"]  # the refused one never reached fit
    assert outcome.failures == ["big"]
    error = outcome.results["errors"]["big"]
    assert (
        "refused before fitting" in error and "about 2 GiB" in error and "budget of 1 GiB" in error
    )
    assert (
        "small" in outcome.results["ood"]["blobs"] and "big" not in outcome.results["ood"]["blobs"]
    )
    warned = [line for line in capsys.readouterr().err.splitlines() if "big" in line]
    assert len(warned) == 1 and warned[0].startswith("ncood: warning: big: refused")


def test_the_budget_is_checked_against_the_estimate_exactly():
    scorer = Greedy(gib=1.0)
    assert refusal("x", scorer, IMAGENET_1K, GIB) is None  # equal: fits
    assert refusal("x", scorer, IMAGENET_1K, GIB - 1) is not None
    assert refusal("x", scorer, IMAGENET_1K, None) is None  # unknown budget: nothing refused
    assert refusal("x", object(), IMAGENET_1K, 1) is None  # no estimate: not checked
    assert budget_bytes(2.5) == int(2.5 * GIB)
    available = budget_bytes(None)
    assert available is None or available > 0


def test_a_broken_estimate_fails_only_its_scorer():
    class Broken(Greedy):
        def memory_bytes(self, shape):
            return "lots"

    with pytest.raises(NcoodError, match="not a number of bytes"):
        memory_estimate(Broken(), IMAGENET_1K)
    outcome = analyze_dump(
        make_dump(),
        [Contribution("broken", Broken, "t", "t", "scorer"), contribution("fine")],
        [],
        options=OodOptions(memory_budget=1.0),
    )
    assert outcome.failures == ["broken"] and "fine" in outcome.results["ood"]["blobs"]


def scorer(name: str, **params):
    return host().scorers().get(name).create(**params)


def test_gmm_at_imagenet_1k_size_needs_its_covariances_and_is_refused_under_3_gib():
    estimate = memory_estimate(scorer("gmm"), IMAGENET_1K)
    covariances = 1000 * 2048 * 2048 * 8  # 33.6 GB, the figure
    assert covariances <= estimate <= covariances * 1.02  # plus a few D² and a chunk
    assert "refused" in refusal("gmm", scorer("gmm"), IMAGENET_1K, 3 * GIB)


@pytest.mark.parametrize("name", ["knn", "nnguide"])
def test_the_banks_keep_1_percent_at_imagenet_1k_size_by_default(name):
    bank = round(0.01 * IMAGENET_1K.train) * 2048 * 4  # 12,812 × 2048 float32
    estimate = memory_estimate(scorer(name), IMAGENET_1K)
    assert bank < estimate < bank + 450 * 2**20  # the bank and a block of similarities
    whole = memory_estimate(scorer(name, bank_fraction=1.0), IMAGENET_1K)
    assert whole > 10 * 10**9  # the whole train bank: 10.5 GB


def test_relations_bank_keeps_1_percent_at_imagenet_1k_size_by_default():
    """relation's bank holds features and probabilities: (2048 + 1000) float32 a row."""
    bank = round(0.01 * IMAGENET_1K.train) * (2048 + 1000) * 4
    estimate = memory_estimate(scorer("relation"), IMAGENET_1K)
    assert bank < estimate < bank + 100 * 2**20  # the bank and one block of relations
    whole = memory_estimate(scorer("relation", bank_fraction=1.0), IMAGENET_1K)
    assert whole > 15 * 10**9  # the whole train bank: 15.6 GB


def test_the_default_bank_is_all_of_train_up_to_imagenet_scale():
    assert bank_fraction(None, 50_000) == 1.0 and bank_fraction(None, LARGE_TRAIN) == 1.0
    assert bank_fraction(None, LARGE_TRAIN + 1) == 0.01
    assert bank_fraction(0.5, 10**7) == 0.5  # a given share is kept
    assert bank_size(0.01, 1_281_167, 50) == 12_812
    assert bank_size(0.01, 1000, 50) == 50  # at least k


def test_knn_records_the_share_it_used():
    outcome = analyze_dump(make_dump(), list(select(host(), ["knn"])[0]), [])
    params = outcome.results["params"]["knn"]
    assert params["bank_fraction"] == 1.0 and params["bank_size"] == 120


def test_cli_refuses_in_one_warning_line_and_keeps_the_others(tmp_path):
    path = tmp_path / "f.safetensors"
    save_features(path, make_dump())
    result = runner.invoke(
        app,
        ["analyze", str(path), "--plugins", "gmm,msp", "--memory-budget", "1e-6", "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 1
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "gmm: refused before fitting" in warnings[0]
    assert "ncood: error: gmm failed: refused before fitting" in result.stderr
    results = json.loads(result.stdout)
    assert "msp" in results["ood"]["blobs"] and "gmm" in results["errors"]


def test_cli_refuses_a_budget_that_is_not_positive(tmp_path):
    path = tmp_path / "f.safetensors"
    save_features(path, make_dump())
    result = runner.invoke(app, ["analyze", str(path), "--memory-budget", "0"])
    assert result.exit_code == 1 and "--memory-budget must be positive" in result.output


def test_the_contract_checks_the_estimate():
    from ncood.testing import ScorerCheckFailed, check_scorer

    class Negative(Greedy):
        def memory_bytes(self, shape):
            return -shape.train

    class Words(Greedy):
        def memory_bytes(self, shape):
            return "lots"

    check_scorer(Greedy, rules=("memory",))
    for wrong, why in ((Negative, "≥ 0"), (Words, "not a number of bytes")):
        with pytest.raises(ScorerCheckFailed, match=why) as caught:
            check_scorer(wrong, rules=("memory",))
        assert caught.value.rule == "memory"
