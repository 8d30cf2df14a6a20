"""Issue #24, part 3: one plugin cannot break the others.

A plugin whose ``register_models`` raises is listed as broken and costs nothing else; a
model-based scorer that leaves the shared network changed is reported, and every scorer after
it still gets the network as it was loaded; a scorer title that matplotlib would read as
mathtext is drawn as plain text, and the report keeps its OOD section.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from cli_helpers import runner

import ncood
from ncood.cli import app
from ncood.store.run import RunDir

# -- register_models raising ----------------------------------------------------------------------


class ModelsRaise:
    @ncood.hookimpl
    def register_models(self, register):
        raise RuntimeError("no models today")


@pytest.fixture
def broken_models(plugin_host):
    plugin_host(ModelsRaise(), "test_models_raise")


def extract(root, *extra: str):
    from ncood.engine.resnet import ResNet18

    torch.manual_seed(3)
    torch.save(ResNet18(10, width=4).state_dict(), root / "epoch_2.pth")
    args = ["extract", "--model", "resnet18-cifar", "--model-arg", "width=4", "--weights"]
    args += [str(root / "epoch_2.pth"), "--dataset", "digits", "--ood", "photos"]
    args += ["--image-size", "24", "--limit", "40", "--out", str(root / "run"), "--quiet"]
    return runner.invoke(app, [*args, *extra])


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """An imported run (weights file, resnet18-cifar) for the model-based scorers."""
    root = tmp_path_factory.mktemp("imported")
    result = extract(root)
    assert result.exit_code == 0, result.output
    return RunDir.open(root / "run")


def test_plugins_lists_a_plugin_whose_register_models_raises_as_broken(broken_models):
    result = runner.invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["test_models_raise"]["broken"]
    assert "RuntimeError" in rows["test_models_raise"]["broken"]
    contributed = [item for row in rows.values() for item in row["contributes"]]
    assert "model resnet18-cifar" in contributed  # the other plugins' models are all there
    assert not any(row["broken"] for name, row in rows.items() if name != "test_models_raise")
    text = runner.invoke(app, ["plugins"])
    assert text.exit_code == 0 and "Traceback" not in text.output


def test_extract_works_beside_a_plugin_whose_register_models_raises(broken_models, tmp_path):
    result = extract(tmp_path)
    assert result.exit_code == 0, result.output
    assert RunDir.open(tmp_path / "run").feature_epochs() == [2]
    warned = [ln for ln in result.stderr.splitlines() if "test_models_raise" in ln]
    assert len(warned) == 1 and warned[0].startswith("ncood: warning:")  # said once


class PresetsRaise:
    @ncood.hookimpl
    def register_presets(self, register):
        raise RuntimeError("no presets today")


def test_train_names_a_broken_plugin_beside_the_unknown_name_it_explains(plugin_host):
    plugin_host(PresetsRaise(), "test_presets_raise")
    result = runner.invoke(app, ["train", "--preset", "theirs", "--dry-run"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert [ln.split(":")[1].strip() for ln in lines] == ["warning", "error"]
    assert "test_presets_raise" in lines[0] and "theirs" in lines[1]
    dry = runner.invoke(app, ["train", "--preset", "demo-standard", "--dry-run"])
    assert dry.exit_code == 0 and json.loads(dry.stdout)["preset"] == "demo-standard"


def test_model_scorers_work_beside_a_plugin_whose_register_models_raises(
    broken_models, imported, tmp_path
):
    copy = tmp_path / "run"
    shutil.copytree(imported.root, copy)
    result = runner.invoke(
        app, ["analyze", str(copy), "--plugins", "odin,msp", "--quiet", "--bootstrap", "0"]
    )
    assert result.exit_code == 0, result.output
    results = json.loads(RunDir.open(copy).results(2).read_text())
    assert "odin" not in results["errors"] and "odin" in results["ood"]["photos"]


# -- a model-based scorer that leaves the network changed -----------------------------------------


def zero_head(network):
    network.submodule(network.head_name).weight.zero_()


def train_mode(network):
    network.module.train()


def trainable(network):
    for parameter in network.module.parameters():
        parameter.requires_grad_(True)


def leave_a_hook(network):
    network.submodule(network.head_name).register_forward_hook(lambda _m, _i, out: out * 0)


def to_double(network):
    network.module.double()


def replace_the_head(network):
    setattr(network.module, network.head_name, torch.nn.Identity())


def no_autograd(network):
    torch.set_grad_enabled(False)


DAMAGES = [zero_head, train_mode, trainable, leave_a_hook, to_double, replace_the_head, no_autograd]


class Vandal:
    """Scores by the max logit, then damages the shared network in one of :data:`DAMAGES`."""

    needs_network = True

    damage = staticmethod(zero_head)

    def fit(self, network, train) -> None:
        return None

    def score(self, network, split):
        with torch.no_grad():
            scores = torch.cat([network.logits(x).max(1).values for x, _ in split])
        Vandal.damage(network)
        return scores


class VandalPlugin:
    @ncood.hookimpl
    def register_scorers(self, register):
        register("test_vandal", Vandal, "max logit, then damages the network")


@pytest.fixture
def vandal(plugin_host):
    plugin_host(VandalPlugin(), "test_vandal_plugin")
    yield
    torch.set_grad_enabled(True)  # in case the test failed before ncood restored it


def analyzed(run: RunDir, names: list[str]):
    """Scores of ``names`` in that order through the driver, the network rebuilt from the run."""
    from ncood.analyze.driver import analyze_file, select
    from ncood.extraction.rerun import open_model_inputs
    from ncood.host.loading import host

    scorers, analyses = select(host(), names)
    return analyze_file(
        run.features(2),
        None,
        scorers,
        analyses,
        options=None,
        model_inputs=lambda: open_model_inputs(run, 2, device=torch.device("cpu")),
    )


@pytest.fixture(scope="module")
def odin_alone(imported):
    outcome = analyzed(imported, ["odin"])
    assert outcome.failures == []
    return outcome.scores["odin"]


@pytest.mark.parametrize("damage", DAMAGES, ids=lambda d: d.__name__)
def test_a_scorer_that_changes_the_network_is_reported_and_the_next_gets_it_as_loaded(
    damage, vandal, imported, odin_alone, monkeypatch
):
    monkeypatch.setattr(Vandal, "damage", staticmethod(damage))
    outcome = analyzed(imported, ["test_vandal", "odin"])
    assert outcome.failures == ["test_vandal"]  # the offender, and only it
    assert "test_vandal" not in outcome.scores
    assert set(outcome.scores["odin"]) == set(odin_alone)
    for split, expected in odin_alone.items():
        # the same network, images and code path: equal up to float64 rounding
        np.testing.assert_allclose(outcome.scores["odin"][split], expected, rtol=1e-9, atol=1e-12)
    assert torch.is_grad_enabled()


def test_the_offender_is_one_line_on_the_cli_and_odin_matches_odin_alone(
    vandal, imported, odin_alone, tmp_path
):
    from ncood.store.scores_file import load_scores_beside

    copy = tmp_path / "run"
    shutil.copytree(imported.root, copy)
    result = runner.invoke(app, ["analyze", str(copy), "--plugins", "test_vandal,odin,msp"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("ncood: error:")]
    assert len(errors) == 1 and "test_vandal" in errors[0], result.stderr
    run = RunDir.open(copy)
    results = json.loads(run.results(2).read_text())
    assert set(results["errors"]) == {"test_vandal"}
    scores = load_scores_beside(run.analysis_dir(2), results)
    for split, expected in odin_alone.items():
        np.testing.assert_allclose(scores["odin"][split], expected, rtol=1e-9, atol=1e-12)


def test_a_scorer_editing_its_network_record_changes_no_other(
    vandal, imported, odin_alone, monkeypatch
):
    """Each scorer gets its own ``Network`` record: odin's pixel-unit step reads
    ``input_std``, which the scorer before it overwrote on its own record only."""

    def rewrite(network):
        network.input_std = tuple(1e6 for _ in network.input_std)
        network.stages.clear()

    monkeypatch.setattr(Vandal, "damage", staticmethod(rewrite))
    outcome = analyzed(imported, ["test_vandal", "odin"])
    assert outcome.failures == []  # the network itself is untouched
    for split, expected in odin_alone.items():
        np.testing.assert_allclose(outcome.scores["odin"][split], expected, rtol=1e-9, atol=1e-12)


def test_a_scorer_that_leaves_the_network_as_loaded_is_not_flagged(imported, odin_alone):
    """odin enables input gradients and mcd switches dropout inside their calls: both leave
    the network as they found it, so neither is reported."""
    outcome = analyzed(imported, ["odin", "mcd", "msp"])
    assert outcome.failures == []
    for split, expected in odin_alone.items():
        np.testing.assert_allclose(outcome.scores["odin"][split], expected, rtol=1e-9, atol=1e-12)


# -- mathtext in a plugin's title -----------------------------------------------------------------

MATHTEXT = [r"$\x$", r"$\frac{$", "$$", r"a $x^2$ b", "$", r"\$"]


class MaxLogit:
    def fit(self, train, head) -> None:
        return None

    def score(self, split):
        return split.logits.max(axis=1).astype(np.float64)


class MathtextPlugin:
    @ncood.hookimpl
    def register_scorers(self, register):
        for index, title in enumerate(MATHTEXT):
            register(f"test_math{index}", MaxLogit, "max logit", title=f"t{index} {title}")


@pytest.fixture
def mathtext_scorers(plugin_host):
    plugin_host(MathtextPlugin(), "test_mathtext_plugin")


def test_a_mathtext_title_keeps_the_ood_section_and_its_figures(
    mathtext_scorers, demo_run, tmp_path
):
    from ncood.analyze.driver import analyze_file, select
    from ncood.host.loading import host
    from ncood.report.build import build_report

    run_dir = tmp_path / "run"
    shutil.copytree(demo_run.root, run_dir)
    run = RunDir.open(run_dir)
    names = [f"test_math{i}" for i in range(len(MATHTEXT))] + ["msp"]
    scorers, analyses = select(host(), names)
    for epoch in run.feature_epochs():
        analyze_file(run.features(epoch), run.analysis_dir(epoch), scorers, analyses)
    result = build_report([run_dir], out_dir=tmp_path / "out", pdf=False)
    tex = result.tex.read_text()
    assert r"\label{sec:ood}" in tex  # the built-in OOD section is in the document
    drawn = {path.name.split("-run")[0] for path in result.figures}
    assert {"roc", "ood-scores", "nc-ood-progress"} <= drawn
    for path in result.figures:
        assert path.is_file() and path.stat().st_size > 0
