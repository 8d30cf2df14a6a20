"""A network scorer (``needs_network``) through ``register_scorers``, from a plugin that is not
built in, on a trained run and on an imported one; refused in one line where there is no
network."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from cli_helpers import one_line_error, runner, train
from network_builders import imported_run

import ncood
from ncood.cli import app
from ncood.store.run import RunDir
from ncood.store.scores_file import load_scores_beside


class NetworkMSP:
    """MSP recomputed through the network: equal to ``msp`` on the features file exactly when
    the rebuilt network, images, order and preprocessing are those of the extraction. A plain
    class (no base): the attribute alone says it runs the network."""

    needs_network = True

    fitted_on: list[int] = []  # images seen by fit(), per call (class-level: the test reads it)

    def __init__(self, power: float = 1.0) -> None:
        self.power = power

    def fit(self, network, train) -> None:
        assert network.module.training is False
        NetworkMSP.fitted_on.append(sum(int(labels.shape[0]) for _, labels in train))

    def score(self, network, split):
        with torch.no_grad():
            probs = [network.logits(x).double().softmax(1).max(1).values for x, _ in split]
        return torch.cat(probs) ** self.power


class Plugin:
    @ncood.hookimpl
    def register_scorers(self, register):
        register("test_netmsp", NetworkMSP, "MSP through the network", title="net-MSP")


@pytest.fixture
def with_plugin(plugin_host):
    plugin_host(Plugin(), "test_model_scorer_plugin")
    NetworkMSP.fitted_on.clear()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "run"
    result = train("--epochs", "1", "--out", str(out))
    assert result.exit_code == 0, result.output
    return RunDir.open(out)


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """An imported run (weights file, resnet18-cifar) for the network scorers."""
    return imported_run(tmp_path_factory.mktemp("imported"))


def analyze(run: RunDir, *args: str):
    return runner.invoke(
        app, ["analyze", str(run.root), "--plugins", "test_netmsp,msp", "--quiet", *args]
    )


def assert_equals_msp(run: RunDir) -> dict:
    epoch = run.feature_epochs()[-1]
    results = json.loads(run.results(epoch).read_text())
    assert "test_netmsp" not in results["errors"], results["errors"]
    scores = load_scores_beside(run.analysis_dir(epoch), results)
    assert set(scores["msp"]) == set(scores["test_netmsp"]) and "test" in scores["msp"]
    for split, expected in scores["msp"].items():
        # the features file's logits went through the same fp32 network: float32 rounding only
        np.testing.assert_allclose(scores["test_netmsp"][split], expected, rtol=2e-6, atol=1e-6)
    for ood, per_scorer in results["ood"].items():
        assert per_scorer["test_netmsp"]["auroc"] == pytest.approx(
            per_scorer["msp"]["auroc"], abs=1e-3
        ), ood
    # it took part in the statistics like any other scorer
    assert "test_netmsp" in json.dumps(results["significance"])
    return results


def test_on_a_trained_run(with_plugin, trained):
    result = analyze(trained)
    assert result.exit_code == 0, result.output
    results = assert_equals_msp(trained)
    assert NetworkMSP.fitted_on == [trained.manifest()["dataset"]["train_size"]]
    params = results["params"]["test_netmsp"]
    assert params["power"] == 1.0 and set(params) == {"power", "network"}
    assert params["network"]["precision"] == "fp32" and params["network"]["batch_size"] >= 1


def test_on_an_imported_run(with_plugin, imported):
    result = analyze(imported, "--set", "test_netmsp.power=1")
    assert result.exit_code == 0, result.output
    assert_equals_msp(imported)
    assert NetworkMSP.fitted_on == [50]


def test_bf16_runs_and_stays_close(with_plugin, trained, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained.root, copy)
    result = analyze(RunDir.open(copy), "--precision", "bf16", "--batch-size", "7")
    assert result.exit_code == 0, result.output
    results = json.loads(RunDir.open(copy).results(1).read_text())
    for per_scorer in results["ood"].values():
        assert per_scorer["test_netmsp"]["auroc"] == pytest.approx(
            per_scorer["msp"]["auroc"], abs=0.05
        )


def test_listed_and_built_like_any_scorer(with_plugin):
    assert "scorer test_netmsp" in runner.invoke(app, ["plugins"]).output
    assert ncood.list_scorers("test_*") == ["test_netmsp"]
    assert ncood.list_scorers("test_*", needs_network=True) == ["test_netmsp"]
    assert ncood.list_scorers("test_*", needs_network=False) == []
    assert isinstance(ncood.create_scorer("test_netmsp", power=2.0), NetworkMSP)


def test_it_keeps_the_scorer_contract(with_plugin):
    from ncood.testing import check_scorer

    check_scorer("test_netmsp")


def test_not_run_unless_named_or_all(with_plugin, trained, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained.root, copy, ignore=shutil.ignore_patterns("analysis"))
    result = runner.invoke(app, ["analyze", str(copy), "--quiet", "--bootstrap", "0"])
    assert result.exit_code == 0, result.output
    results = json.loads(RunDir.open(copy).results(1).read_text())
    assert "msp" in results["params"] and "test_netmsp" not in results["params"]
    result = runner.invoke(app, ["analyze", str(copy), "--quiet", "--plugins", "all"])
    assert result.exit_code == 0, result.output
    results = json.loads(RunDir.open(copy).results(1).read_text())
    assert {"msp", "test_netmsp", "nc"} <= set(results["params"])


def test_a_features_file_refuses_in_one_line(with_plugin, trained, tmp_path):
    features = trained.features(1)
    result = runner.invoke(
        app, ["analyze", str(features), "--plugins", "test_netmsp", "--out", str(tmp_path / "o")]
    )
    one_line_error(result, "test_netmsp needs the network", "a features file holds none")
    assert not (tmp_path / "o" / "results.json").exists()


def test_a_run_imported_from_a_python_model_refuses(with_plugin, tmp_path):
    from ncood.engine.resnet import ResNet18

    images = torch.rand(20, 3, 16, 16)
    labels = torch.arange(20) % 10
    run = ncood.extract(
        ResNet18(10, width=4), train=(images, labels), test=(images, labels),
        ood={"x": images}, out=tmp_path / "api",
    )  # fmt: skip
    result = runner.invoke(app, ["analyze", str(run), "--plugins", "test_netmsp"])
    one_line_error(result, "imported from a Python model", "no weights")


def test_a_missing_checkpoint_refuses_before_any_work(with_plugin, trained, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained.root, copy, ignore=shutil.ignore_patterns("analysis"))
    (copy / "checkpoints" / "epoch-0001.safetensors").unlink()
    result = runner.invoke(app, ["analyze", str(copy), "--plugins", "test_netmsp,msp"])
    one_line_error(result, "no checkpoint for epoch 1")
    assert not (copy / "analysis").exists()


def test_bad_precision_is_one_line(with_plugin, trained):
    result = analyze(trained, "--precision", "fp16")
    one_line_error(result, "--precision 'fp16'", "fp32, bf16")


def test_other_images_than_the_features_fail_that_scorer_only(with_plugin, trained, tmp_path):
    """The labels of the rebuilt batches are compared with the features file's: data that
    differs (another --data-dir) fails the model-based scorer, not the others."""
    from ncood.analyze.driver import analyze_file, select
    from ncood.extraction.rerun import open_model_inputs
    from ncood.host.loading import host

    def shuffled():
        inputs = open_model_inputs(trained, 1, device=torch.device("cpu"))
        inputs.splits["test"].labels = np.roll(inputs.splits["test"].labels, 1)
        return inputs

    scorers, analyses = select(host(), ["test_netmsp", "msp"])
    outcome = analyze_file(trained.features(1), None, scorers, analyses, model_inputs=shuffled)
    assert outcome.failures == ["test_netmsp"]
    assert "labels differ" in outcome.results["errors"]["test_netmsp"]
    assert "msp" in next(iter(outcome.results["ood"].values()))


@pytest.mark.parametrize("which", ["trained", "imported"])
def test_the_built_in_model_scorers_run_on_both_kinds_of_run(which, request, tmp_path):
    run = request.getfixturevalue(which)
    copy = tmp_path / "run"
    shutil.copytree(run.root, copy, ignore=shutil.ignore_patterns("analysis"))
    names = "odin,mcd,gram,rankfeat"
    result = runner.invoke(
        app, ["analyze", str(copy), "--plugins", names, "--quiet", "--set", "mcd.samples=4"]
    )
    assert result.exit_code == 0, result.output
    copied = RunDir.open(copy)
    results = json.loads(copied.results(copied.feature_epochs()[-1]).read_text())
    assert results["errors"] == {}
    for per_scorer in results["ood"].values():
        assert set(per_scorer) == set(names.split(","))
        assert all(0.0 <= m["auroc"] <= 1.0 for m in per_scorer.values())
    assert results["params"]["mcd"]["samples"] == 4


def test_missing_data_is_one_line_before_any_work(with_plugin, trained, tmp_path):
    """The run's data is loaded once, before the first epoch: a dataset that is not there is
    one line, and nothing is analyzed (the feature-level scorers do not need it, but the
    command asked for a model-based one)."""
    copy = tmp_path / "run"
    shutil.copytree(trained.root, copy, ignore=shutil.ignore_patterns("analysis"))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["config"]["dataset"] = "cifar10"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    empty = tmp_path / "no-data"
    empty.mkdir()
    result = runner.invoke(
        app, ["analyze", str(copy), "--plugins", "test_netmsp,msp", "--data-dir", str(empty)]
    )
    one_line_error(result, "CIFAR-10 (train) is not under", str(empty))
    assert not (copy / "analysis").exists()
