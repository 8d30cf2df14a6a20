"""Results that look valid and are not. Settings that give every sample the same score, or
no finite one, are refused before any work (at their bounds, not before); constant scores
that get through are marked degenerate (results.json, a warning, the report never calls them
the best); identical class means give an undefined NC1, not perfect collapse; constant logits
do not pin tscaling's temperature at its bound.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from cli_helpers import runner
from hostile_helpers import analyze, copied, one_line_error
from nc_builders import make_dump

import ncood
from ncood.cli import app
from ncood.host.loading import host
from ncood.store.features import Split, save_features

# -- refused by construction -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def features(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("features") / "features.safetensors"
    save_features(path, make_dump())
    return path


FEATURE_LEVEL = [
    ("tscaling", ["tscaling.T=1e30"]),
    ("energy", ["energy.T=1e30"]),
    ("gradnorm", ["gradnorm.T=1e300"]),
    ("gmm", ["gmm.ridge=1e300"]),
    ("dice", ["dice.p=100"]),
    ("vra", ["vra.lower_percentile=50", "vra.upper_percentile=50"]),
]


@pytest.mark.parametrize(("scorer", "settings"), FEATURE_LEVEL)
def test_settings_that_make_every_score_equal_are_refused(scorer, settings, features, tmp_path):
    out = tmp_path / "out"
    args = ["analyze", str(features), "--out", str(out), "--plugins", scorer, "--quiet"]
    result = runner.invoke(app, [*args, *(a for s in settings for a in ("--set", s))])
    one_line_error(result, scorer)
    assert not (out / "results.json").exists()


@pytest.mark.parametrize(
    ("scorer", "settings"),
    [
        ("tscaling", {"T": 1e12}),
        ("gmm", {"ridge": 1e12}),
        ("dice", {"p": 99.9}),
        ("vra", {"lower_percentile": 50.0, "upper_percentile": 50.001}),
    ],
)
def test_the_bounds_themselves_are_accepted(scorer, settings):
    """The refusal is at the bound, not before it (the bounds are in docs/conventions.md)."""
    from ncood.host.loading import host

    host().scorers().get(scorer).create(**settings)


@pytest.mark.parametrize("setting", ["odin.T=1e308", "rankfeat.T=1e300"])
def test_model_based_temperatures_that_flatten_the_softmax_are_refused(setting, trained, tmp_path):
    run = copied(trained, tmp_path / "run")
    scorer = setting.split(".")[0]
    result = runner.invoke(
        app, ["analyze", str(run.root), "--plugins", scorer, "--set", setting, "--quiet"]
    )
    one_line_error(result, scorer)
    assert not (run.root / "analysis").exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999", "NaN"])
def test_non_finite_set_values_are_refused(tmp_path, features_file, value):
    out = tmp_path / "out"
    one_line_error(
        analyze(features_file, "--plugins", "energy", "--set", f"energy.T={value}", "--out", out),
        "finite",
    )
    assert not out.exists() or not list(out.iterdir())


# -- constant scores that get through --------------------------------------------------------------


class Constant:
    """Every sample the same score: AUROC 0.5 by construction."""

    def fit(self, train, head) -> None:
        return None

    def score(self, split) -> np.ndarray:
        return np.full(len(split), 2.5)


class Inverted:
    """Minus the largest class-axis feature: OOD above ID, an AUROC far below 0.5."""

    def fit(self, train, head) -> None:
        return None

    def score(self, split) -> np.ndarray:
        return -np.asarray(split.features, np.float64)[:, :4].max(axis=1)


class Stepped:
    """Minus the largest class-axis feature rounded to a multiple of 2 (at most 6): a few
    values, upside down too."""

    def fit(self, train, head) -> None:
        return None

    def score(self, split) -> np.ndarray:
        top = np.asarray(split.features, np.float64)[:, :4].max(axis=1)
        return -np.clip(np.round(top / 2), 0, 3)


class ConstantPlugin:
    @ncood.hookimpl
    def register_scorers(self, register):
        register("test_constant", Constant, "one value for all", family="feature")
        register("test_inverted", Inverted, "a scorer upside down", family="feature")
        register("test_stepped", Stepped, "three values", family="feature")


def made_up_run(results: dict):
    from ncood.report.context import AnalyzedRun

    manifest = {
        "config": {"preset": "demo", "epochs": 1, "ood": ["blobs"]},
        "dataset": {"name": "blobs"},
    }
    run = AnalyzedRun(SimpleNamespace(root=Path("/made/up/demo")), manifest, [], {1: results})
    run.__dict__["final_scores"] = {}  # no figures
    return run


def test_constant_scores_are_marked_degenerate_and_never_the_best(features, tmp_path, plugin_host):
    from ncood.report.build import core_templates
    from ncood.report.context import ReportContext, load_strings
    from ncood_plugins.sections import ood as report_ood

    plugin_host(ConstantPlugin(), "constant_scorers")
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        ["analyze", str(features), "--out", str(out), "--quiet", "--bootstrap", "0"]
        + ["--plugins", "test_constant,test_inverted,test_stepped"],
    )
    assert result.exit_code == 0, result.output
    assert len([line for line in result.stderr.splitlines() if "test_constant" in line]) == 1
    assert len([line for line in result.stderr.splitlines() if "test_stepped" in line]) == 1
    results = json.loads((out / "results.json").read_text())
    per = results["ood"]["blobs"]
    assert per["test_constant"]["auroc"] == 0.5 and per["test_constant"]["degenerate"] is True
    assert (
        "degenerate" not in per["test_inverted"] and "distinct_values" not in per["test_inverted"]
    )
    assert 1 < per["test_stepped"]["distinct_values"] < 10
    assert "degenerate" not in per["test_stepped"]
    # the others rank OOD above ID: the highest AUROC is the constant one's 0.5
    assert per["test_inverted"]["auroc"] < 0.5 and per["test_stepped"]["auroc"] < 0.5
    verdict = results["significance"]["ood"]["blobs"]
    assert verdict["best"] != "test_constant" and "test_constant" not in verdict["pairs"]

    # a results.json written before the check, whose verdict names the constant scorer
    verdict["best"] = "test_constant"

    ctx = ReportContext(
        [made_up_run(results)], "en", tmp_path, tmp_path, load_strings("en", [core_templates()])
    )
    table = report_ood.metrics_table(ctx, "blobs")
    others = {s: per[s]["auroc"] for s in ("test_inverted", "test_stepped")}
    assert table["best_auroc"] == [max(others, key=others.get)]  # the best of the others
    assert table["degenerate"]
    rows = {row["method"]: row for row in table["rows"]}
    constant = rows[ctx.scorer_title("test_constant")]
    assert all(cell["degenerate"] and not cell["best"] for cell in constant["cells"])
    assert not any(cell["degenerate"] for cell in rows[ctx.scorer_title("test_stepped")]["cells"])
    sentence = report_ood.best_sentence(ctx, ctx.runs[0], "blobs", table["best_auroc"][0])
    assert ctx.scorer_title("test_constant") not in sentence


def test_scores_that_rank_are_not_flagged():
    from ncood.ood.spread import spread

    rng = np.random.default_rng(0)
    assert spread(rng.normal(size=50), rng.normal(size=40)) == {}
    # one split constant (a confident network's MSP of exactly 1.0) is not degenerate
    assert spread(np.ones(50), rng.uniform(size=40)) == {}
    assert spread(np.ones(50), np.ones(40)) == {"degenerate": True, "distinct_values": 1}


# -- degenerate data -------------------------------------------------------------------------------


def test_identical_class_means_give_an_undefined_nc1_not_perfect_collapse(tiny_dump):
    from ncood.analyze.driver import analyze_dump, select

    rng = np.random.default_rng(0)
    points = rng.normal(size=(10, tiny_dump.feature_dim)).astype(np.float32)
    classes = tiny_dump.num_classes
    features = np.tile(points, (classes, 1))  # every class: the same ten points
    labels = np.repeat(np.arange(classes), len(points))
    logits = features @ tiny_dump.head.weight.T
    from ncood.store.features import FeatureDump, Split

    train = Split(features, logits, labels)
    dump = FeatureDump(train, train, tiny_dump.ood, tiny_dump.head)
    outcome = analyze_dump(dump, [], select(host(), ["nc"])[1])
    nc = outcome.results["nc"]
    assert nc["nc1"] is None
    assert any("undefined" in note for note in nc.get("notes", [])), nc


def test_tscaling_on_constant_logits_uses_t_1(capsys):
    """Every sample the same logits: the NLL falls towards the uniform softmax, which used to
    pin T at the bound of 100; T = 1 is used and said, in one warning line."""
    labels = np.arange(60) % 3
    logits = np.tile(np.float32([5.0, 0.0, 0.0]), (60, 1))
    train = Split(np.zeros((60, 4), np.float32), logits, labels)
    scorer, _ = host().scorers().get("tscaling").build({})
    scorer.fit(train, None)
    assert scorer.resolved_params["T"] == 1.0
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    varied = Split(np.zeros((60, 4), np.float32), logits + np.eye(3)[labels], labels)
    scorer.fit(varied, None)  # logits that do vary are still fitted
    assert scorer.resolved_params["T"] != 1.0
