"""Plugins that misbehave: one that fails to import or to register, raises, calls sys.exit,
presses Ctrl-C, returns values JSON cannot hold, warns, or changes the network it shares with
the other model-based scorers. Its failure costs only it: the other plugins run, their results
and the plugin's own previous result are kept, and the offender is named in one line.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from importlib.metadata import EntryPoint

import numpy as np
import pytest
import torch
from cli_helpers import runner
from hostile_helpers import analyze, results_of

import ncood
from ncood.cli import app
from ncood.host.loading import host
from ncood.store.run import RunDir


@pytest.fixture
def test_plugin():
    added = []

    def add(plugin, name):
        host().add(plugin, name, distribution="tests", version="0", builtin=False)
        added.append(name)

    yield add
    for name in added:
        host().remove(name)


# -- a plugin that fails: the others, and its previous result, are kept ----------------------------


def test_a_new_run_of_one_plugin_replaces_only_its_entries(tmp_path, features_file):
    out = tmp_path / "out"
    assert analyze(features_file, "--plugins", "msp,energy", "--out", out).exit_code == 0
    first = results_of(out)
    result = analyze(features_file, "--plugins", "energy", "--set", "energy.T=3", "--out", out)
    assert result.exit_code == 0, result.output
    merged = results_of(out)
    assert merged["ood"]["blobs"]["msp"] == first["ood"]["blobs"]["msp"]
    assert merged["params"]["energy"] == {"T": 3.0} and "msp" in merged["params"]
    from ncood.store.scores_file import load_scores_beside

    scores = load_scores_beside(out, merged)
    assert set(scores) == {"msp", "energy"}


def test_a_failed_plugin_keeps_its_previous_good_result_unless_asked(tmp_path, features_file):
    out = tmp_path / "out"
    assert analyze(features_file, "--plugins", "msp,vim", "--out", out).exit_code == 0
    good = results_of(out)["ood"]["blobs"]["vim"]
    failed = analyze(features_file, "--plugins", "vim", "--set", "vim.dim=8", "--out", out)
    assert failed.exit_code == 1
    assert "vim failed: vim.dim must be between" in failed.stderr
    assert "previous result is kept" in failed.stderr
    kept = results_of(out)
    assert kept["ood"]["blobs"]["vim"] == good and "vim.dim" in kept["errors"]["vim"]
    assert "msp" in kept["ood"]["blobs"]
    from ncood.store.scores_file import load_scores_beside

    assert set(load_scores_beside(out, kept)) == {"msp", "vim"}
    dropped = analyze(
        features_file, "--plugins", "vim", "--set", "vim.dim=8", "--out", out, "--discard-failed"
    )
    assert dropped.exit_code == 1
    assert "vim" not in results_of(out)["ood"]["blobs"]
    assert set(load_scores_beside(out, results_of(out))) == {"msp"}


def test_when_every_plugin_fails_the_results_and_scores_still_match(tmp_path, features_file):
    out = tmp_path / "out"
    assert analyze(features_file, "--plugins", "msp,energy", "--out", out).exit_code == 0
    assert analyze(features_file, "--plugins", "vim", "--set", "vim.dim=8", "--out", out).exit_code
    results = results_of(out)
    assert set(results["ood"]["blobs"]) == {"msp", "energy"}
    from safetensors import safe_open

    from ncood.store.scores_file import scores_path

    with safe_open(str(scores_path(out, results)), "numpy") as handle:
        assert handle.metadata()["id"] == results["scores_file"]["id"]
        assert {k.split("/")[0] for k in handle.keys()}  # noqa: SIM118 == {"msp", "energy"}


# -- an analysis that returns odd values, raises, exits or presses Ctrl-C --------------------------


def analysis_plugin(name: str, returns):
    class Analysis:
        def run(self, dump):
            return returns() if callable(returns) else returns

    class Plugin:
        @ncood.hookimpl
        def register_analyses(self, register):
            register(name, Analysis, "a test analysis")

    return Plugin()


def test_odd_values_from_an_analysis_are_converted_at_the_boundary(
    tmp_path, features_file, test_plugin
):
    values = {
        "scalar": np.float32(1.5),
        "count": np.int64(3),
        "flag": np.bool_(True),
        "nan": float("nan"),
        "inf": np.float64("inf"),
        "array": np.arange(3),
        "keys": {np.int64(1): "one", 2: "two"},
    }
    test_plugin(analysis_plugin("odd", values), "odd_plugin")
    out = tmp_path / "out"
    result = analyze(features_file, "--plugins", "msp,odd", "--out", out)
    assert result.exit_code == 0, result.output
    odd = results_of(out)["odd"]
    assert odd == {
        "scalar": 1.5,
        "count": 3,
        "flag": True,
        "nan": None,
        "inf": None,
        "array": [0, 1, 2],
        "keys": {"1": "one", "2": "two"},
    }


@pytest.mark.parametrize(
    "returns, reason",
    [
        ({"a set": {1, 2}}, "of type set, which is not JSON"),
        ({"obj": object()}, "of type object, which is not JSON"),
        ([1, 2], "returned a list, not a dict"),
        (lambda: sys.exit(0), "called sys.exit(0)"),
        (lambda: sys.exit("bye"), "called sys.exit('bye')"),
    ],
)
def test_a_misbehaving_analysis_fails_alone(tmp_path, features_file, test_plugin, returns, reason):
    test_plugin(analysis_plugin("bad", returns), "bad_plugin")
    out = tmp_path / "out"
    result = analyze(features_file, "--plugins", "msp,bad,energy", "--out", out)
    assert result.exit_code == 1
    assert "bad failed: " in result.stderr and reason in result.stderr, result.stderr
    assert "Traceback" not in result.output
    results = results_of(out)
    assert set(results["ood"]["blobs"]) == {"msp", "energy"}
    assert reason in results["errors"]["bad"]


def test_ctrl_c_in_a_plugin_still_stops_ncood(tmp_path, features_file, test_plugin):
    def interrupt():
        raise KeyboardInterrupt

    test_plugin(analysis_plugin("stop", interrupt), "stop_plugin")
    result = analyze(features_file, "--plugins", "stop", "--out", tmp_path / "out")
    assert result.exit_code == 130 and "interrupted" in result.stderr
    assert not (tmp_path / "out" / "results.json").exists()


# -- a report section that calls sys.exit ----------------------------------------------------------


def test_a_section_calling_sys_exit_is_one_line_not_a_silent_exit(demo_run, tmp_path, monkeypatch):
    import ncood
    from ncood.report.context import ReportSection

    def leave(ctx):
        raise SystemExit(0)

    class Plugin:
        @ncood.hookimpl
        def register_report_sections(self, register):
            register(ReportSection("leaver", 15, "sections/none.tex.j2", leave))

    host().add(Plugin(), "leaver_plugin", distribution="tests", version="0", builtin=False)
    try:
        result = runner.invoke(
            app, ["report", str(demo_run.root), "--out", str(tmp_path / "out"), "--no-pdf"]
        )
    finally:
        host().remove("leaver_plugin")
    assert result.exit_code == 1
    assert "'leaver' (plugin leaver_plugin) failed: called sys.exit(0)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# -- a plugin that warns ---------------------------------------------------------------------------


NOISY_RUN = """
import sys, warnings
import numpy as np
import ncood
from ncood.host.loading import host

class Noisy:
    def fit(self, train, head):
        warnings.warn("something deprecated", DeprecationWarning, stacklevel=1)
        warnings.warn("something odd", UserWarning, stacklevel=1)
        np.log(np.zeros(1))  # RuntimeWarning: divide by zero

    def score(self, split):
        return split.logits.max(axis=1)

class Plugin:
    @ncood.hookimpl
    def register_scorers(self, register):
        register("noisy", Noisy, "warns")

host().add(Plugin(), "noisy_plugin", distribution="tests", version="0", builtin=False)
from ncood.cli import main
sys.argv = ["ncood", "analyze", sys.argv[1], "--plugins", "noisy", "--out", sys.argv[2], "--quiet"]
main()
"""


def test_python_warnings_do_not_leak_onto_stderr(tmp_path, features_file):
    """In a process of its own: pytest would catch the warnings before they reach stderr."""
    import subprocess

    env = {**os.environ, "NCOOD_LOAD_PLUGINS": ""}
    env.pop("PYTHONWARNINGS", None)
    done = subprocess.run(
        [sys.executable, "-c", NOISY_RUN, str(features_file), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr


# -- a plugin that fails to import or to register --------------------------------------------------


# An installed plugin whose module imports a dependency that is not installed.
BROKEN_ENTRY_POINT = EntryPoint(
    name="broken_import", value="missing_dependency_of_a_plugin:plugin", group="ncood"
)


@pytest.fixture
def broken_install(monkeypatch):
    import ncood.host.loading as plugins_module

    real = plugins_module.entry_points
    monkeypatch.setenv("NCOOD_LOAD_PLUGINS", "broken_import")
    monkeypatch.setattr(
        plugins_module, "entry_points", lambda group: [*real(group=group), BROKEN_ENTRY_POINT]
    )
    plugins_module.host.cache_clear()
    yield
    monkeypatch.undo()
    plugins_module.host.cache_clear()


def test_a_plugin_that_fails_to_import_is_listed_as_broken(broken_install, features_file):
    listed = runner.invoke(app, ["plugins"])
    assert listed.exit_code == 0, listed.output
    line = next(ln for ln in listed.output.splitlines() if ln.startswith("broken_import"))
    assert "BROKEN" in line and "missing_dependency_of_a_plugin" in line
    assert "scorer msp" in listed.output  # the others still load
    result = analyze(features_file, "--plugins", "msp")
    assert result.exit_code == 0, result.output
    assert "plugin 'broken_import'" in result.stderr and "is broken" in result.stderr


def test_a_plugin_whose_registration_raises_is_broken_not_fatal(test_plugin, features_file):
    class Plugin:
        @ncood.hookimpl
        def register_scorers(self, register):
            register("half", object, "registered before the crash")
            raise RuntimeError("registration bug")

    test_plugin(Plugin(), "bad_registration")
    result = analyze(features_file, "--plugins", "msp")
    assert result.exit_code == 0, result.output
    assert "'bad_registration'" in result.stderr and "registration bug" in result.stderr
    listed = runner.invoke(app, ["plugins"])
    assert "BROKEN" in listed.output and "scorer half" not in listed.output


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


# -- a model-based scorer that leaves the network changed ------------------------------------------


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
