"""analyze --bootstrap / --ood groups / --tune through the command line."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from ncood.cli import app
from ncood.cli.analyze import regroup_ood
from ncood.store.scores_file import scores_path

runner = CliRunner()


def analyze(features, out, *extra):
    return runner.invoke(
        app, ["analyze", str(features), "--json", "--quiet", "--out", str(out), *extra]
    )


@pytest.fixture(scope="module")
def features(demo_run):
    return demo_run.features(demo_run.feature_epochs()[-1])


def test_intervals_and_p_values_stored_beside_the_values(tmp_path, features):
    result = analyze(
        features,
        tmp_path,
        "--plugins",
        "msp,energy,mahalanobis",
        "--bootstrap",
        "300",
        "--bootstrap-seed",
        "7",
    )
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "results.json").read_text())
    for per_scorer in results["ood"].values():
        for metrics in per_scorer.values():
            for metric in ("auroc", "aupr_in", "aupr_out", "fpr95"):
                # a percentile interval need not contain the point estimate (coverage is
                # what it promises: tests/ood/test_bootstrap.py); it is an ordered pair of rates
                lo, hi = metrics[f"{metric}_ci"]
                assert 0.0 <= lo <= hi <= 1.0
    assert results["params"]["bootstrap"] == {
        "method": "stratified percentile bootstrap",
        "resamples": 300,
        "level": 0.95,
        "seed": 7,
        "strata": ["id", "ood"],
    }
    photos = results["significance"]["ood"]["photos"]
    assert set(photos["pairs"]) == {"msp", "energy", "mahalanobis"}
    assert photos["pairs"]["msp"]["energy"] == photos["pairs"]["energy"]["msp"]
    assert photos["indistinguishable"][0] == photos["best"]
    none = tmp_path / "none"
    assert analyze(features, none, "--plugins", "msp,energy", "--bootstrap", "0").exit_code == 0
    plain = json.loads((none / "results.json").read_text())
    assert "auroc_ci" not in plain["ood"]["photos"]["msp"] and "bootstrap" not in plain["params"]


def test_a_partial_rerun_recomputes_the_statistics_over_every_scorer_kept(tmp_path, features):
    """analyze msp,energy then analyze mahalanobis into the same folder: the DeLong pairs and
    the verdict cover all three (a merge per plugin must not leave them about the last run)."""
    args = ("--bootstrap", "200", "--bootstrap-seed", "3")
    assert analyze(features, tmp_path, "--plugins", "msp,energy", *args).exit_code == 0
    first = json.loads((tmp_path / "results.json").read_text())
    assert analyze(features, tmp_path, "--plugins", "mahalanobis", *args).exit_code == 0
    merged = json.loads((tmp_path / "results.json").read_text())
    photos = merged["significance"]["ood"]["photos"]
    assert set(photos["pairs"]) == {"msp", "energy", "mahalanobis"}
    together = tmp_path / "together"
    assert analyze(features, together, "--plugins", "msp,energy,mahalanobis", *args).exit_code == 0
    once = json.loads((together / "results.json").read_text())
    assert photos == once["significance"]["ood"]["photos"]
    # the same seed draws the same resamples: the kept scorers' intervals do not move
    assert merged["ood"]["photos"]["msp"] == first["ood"]["photos"]["msp"]


def test_a_partial_rerun_and_a_single_run_give_bit_identical_statistics(tmp_path, features):
    """Two scorer sets analyzed in turn into one folder, or all four at once, over two OOD sets
    in two groups: every statistic of results.json and every stored score is the same to the
    last bit (the kept scorers' are recomputed from float64 scores on disk, the very values a
    single run computes them from), whatever CPU rounds the last digit of a score."""
    from safetensors.numpy import load_file

    args = ("--bootstrap", "200", "--bootstrap-seed", "5", "--ood", "near:photos far:noise")
    merged, single = tmp_path / "merged", tmp_path / "single"
    for plugins in ("msp,energy", "mahalanobis,vim"):
        result = analyze(features, merged, "--plugins", plugins, *args)
        assert result.exit_code == 0, result.output
    result = analyze(features, single, "--plugins", "msp,energy,mahalanobis,vim", *args)
    assert result.exit_code == 0, result.output
    a, b = (json.loads((d / "results.json").read_text()) for d in (merged, single))
    assert set(a["ood"]) == {"photos", "noise"}
    assert set(a["ood"]["photos"]) == {"msp", "energy", "mahalanobis", "vim"}
    for key in ("ood", "significance", "ood_groups", "test"):
        assert a[key] == b[key], key  # dict equality: every float equal, order aside
    scores_a, scores_b = (load_file(str(scores_path(d, r))) for d, r in ((merged, a), (single, b)))
    assert scores_a.keys() == scores_b.keys()
    for key, values in scores_a.items():
        assert values.dtype == np.float64
        assert values.tobytes() == scores_b[key].tobytes(), key


def test_ood_groups_select_test_sets_and_give_group_means(tmp_path, features):
    result = analyze(
        features,
        tmp_path,
        "--plugins",
        "msp,energy",
        "--bootstrap",
        "200",
        "--ood",
        "near:photos",
        "--ood",
        "far:noise,photos",
    )
    assert result.exit_code == 1  # photos twice
    assert "twice" in result.output and "Traceback" not in result.output
    result = analyze(
        features,
        tmp_path,
        "--plugins",
        "msp,energy",
        "--bootstrap",
        "200",
        "--ood",
        "a:photos b:noise",
    )
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results["ood_groups"]) == ["a", "b"]
    group = results["ood_groups"]["a"]["scorers"]["msp"]
    assert group["auroc"] == pytest.approx(results["ood"]["photos"]["msp"]["auroc"])
    assert len(group["auroc_ci"]) == 2
    only = tmp_path / "only"
    assert analyze(features, only, "--plugins", "msp", "--ood", "photos").exit_code == 0
    assert list(json.loads((only / "results.json").read_text())["ood"]) == ["photos"]
    result = analyze(features, only, "--plugins", "msp", "--ood", "cifar10")
    assert result.exit_code == 1 and "not in the features" in result.output


def test_the_openood_form_needs_no_quotes():
    args = ["analyze", "RUN", "--ood", "near:cifar10,tin", "far:svhn,mnist,dtd", "--quiet"]
    assert regroup_ood(args) == [
        "analyze",
        "RUN",
        "--ood",
        "near:cifar10,tin",
        "--ood",
        "far:svhn,mnist,dtd",
        "--quiet",
    ]
    assert regroup_ood(["train", "--ood", "svhn", "x:y"]) == ["train", "--ood", "svhn", "x:y"]


def test_tune_refuses_a_test_set_and_records_the_choice(tmp_path, features):
    result = analyze(
        features, tmp_path, "--plugins", "knn", "--tune", "knn.k=1,5", "--tune-on", "noise"
    )
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line]
    assert len(lines) == 1 and "one of the test OOD sets" in lines[0]
    result = analyze(
        features,
        tmp_path,
        "--plugins",
        "knn,msp",
        "--bootstrap",
        "0",
        "--ood",
        "photos",
        "--tune",
        "knn.k=1,3,9",
        "--tune-on",
        "noise",
    )
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "results.json").read_text())
    tuning = results["tuning"]
    assert tuning["ood"] == "noise" and list(results["ood"]) == ["photos"]
    tried = tuning["scorers"]["knn"]["tried"]
    best = max(tried, key=lambda t: t["auroc"])
    assert tuning["scorers"]["knn"]["chosen"] == best["params"]
    assert results["params"]["knn"]["k"] == best["params"]["k"]
    assert tuning["scorers"]["knn"]["grid"] == {"k": ["1", "3", "9"]}
    assert tuning["validation"]["seed"] == 0 and tuning["validation"]["id_size"] > 0
    result = analyze(features, tmp_path, "--plugins", "knn", "--tune-on", "noise")
    assert result.exit_code == 1 and "go together" in result.output
