"""Two scorers tied exactly for the best: the same "best" and the same indistinguishable set
from a single run and from a partial rerun, whatever order the scorers come in."""

from __future__ import annotations

import json

import numpy as np
import pytest
from nc_builders import make_dump
from typer.testing import CliRunner

import ncood
from ncood.cli import app
from ncood.store.features import save_features
from ncood_plugins.sections.ood import best_of

runner = CliRunner()


def separating(split) -> np.ndarray:
    """The largest of the class axes (ID clusters sit at 6 on them), blurred by a noise axis."""
    features = np.asarray(split.features, np.float64)
    return features[:, :4].max(axis=1) + 3.0 * features[:, 6]


class Twin:
    """``separating`` times ``factor``: a different score, the same ranking, the same AUROC."""

    def __init__(self, factor: float = 1.0) -> None:
        self.factor = factor

    def fit(self, train, head) -> None:
        return None

    def score(self, split) -> np.ndarray:
        return self.factor * separating(split)


class Weak:
    """A noise axis only: AUROC about 0.5."""

    def fit(self, train, head) -> None:
        return None

    def score(self, split) -> np.ndarray:
        return np.asarray(split.features, np.float64)[:, 5]


class TiedPlugin:
    @ncood.hookimpl
    def register_scorers(self, register):
        register("twin_b", Twin, "the separating score")
        register("twin_a", lambda: Twin(2.0), "twice the separating score (the same ranking)")
        register("weak", Weak, "a noise axis")


@pytest.fixture
def features(tmp_path, plugin_host):
    plugin_host(TiedPlugin(), "tied_scorers")
    path = tmp_path / "features.safetensors"
    save_features(path, make_dump(per_class=40, ood_count=60, seed=3))
    return path


def analyze(features, out, plugins: str) -> dict:
    result = runner.invoke(
        app,
        ["analyze", str(features), "--json", "--quiet", "--out", str(out)]
        + ["--plugins", plugins, "--bootstrap", "0"],
    )
    assert result.exit_code == 0, result.output
    return json.loads((out / "results.json").read_text())["significance"]["ood"]["blobs"]


def test_partial_rerun_and_single_run_name_the_same_best(tmp_path, features):
    analyze(features, tmp_path / "partial", "twin_b,weak")
    partial = analyze(features, tmp_path / "partial", "twin_a")  # merged: twin_b, weak, twin_a
    single = analyze(features, tmp_path / "single", "twin_a,twin_b,weak")
    reversed_ = analyze(features, tmp_path / "reversed", "weak,twin_b,twin_a")
    assert partial["pairs"]["twin_a"]["twin_b"] == 1.0  # tied exactly: the same ranking
    for verdict in (partial, single, reversed_):
        assert verdict["best"] == "twin_a"  # the tied name that sorts first
        assert verdict["indistinguishable"] == ["twin_a", "twin_b"]
        assert verdict["p_adjusted"] == partial["p_adjusted"]
        assert verdict["p_adjusted"]["weak"] <= 0.05


def test_report_tables_break_ties_by_name_too():
    assert best_of({"msp": 0.9, "energy": 0.9, "vim": 0.8}) == "energy"
    assert best_of({"vim": 0.8, "energy": 0.9, "msp": 0.9}) == "energy"
    assert best_of({"msp": 0.1, "energy": 0.1, "vim": 0.3}, lower_is_better=True) == "energy"
