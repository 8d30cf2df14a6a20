"""The options of ``ncood analyze`` and ``ncood extract`` are declared once, as fields
(ncood/analyze/options.py, ncood/extraction/named.py): a field added to the declaration is an
option of the command, reaches the code that runs, and (extract) is recorded in the manifest,
without another edit."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch
import typer
from network_builders import TinyNet
from typer.testing import CliRunner

import ncood
from ncood.analyze import driver
from ncood.analyze.options import AnalyzeOptions, OodOptions
from ncood.cli import app as ncood_app
from ncood.cli.analyze import analyze_command
from ncood.cli.app import Command, user_errors
from ncood.cli.extract import extract_command
from ncood.extraction.named import ExtractRequest
from ncood.store.features import save_features
from ncood.store.run import RunDir
from ncood.store.settings import option_name, setting

runner = CliRunner()


def app_for(name: str, command):
    app = typer.Typer(rich_markup_mode=None)  # click's plain layout, as ncood's own app
    app.command(name=name, cls=Command)(user_errors(command))
    app.command(name="other")(lambda: None)  # two commands: `name` stays a subcommand
    return app


def option_params(app, command: str) -> dict[str, object]:
    group = typer.main.get_command(app)
    return {p.name: p for p in group.commands[command].params if p.param_type_name == "option"}


@pytest.mark.parametrize(
    ("command", "declaration"), [("analyze", AnalyzeOptions), ("extract", ExtractRequest)]
)
def test_every_field_is_an_option_with_its_declared_name_metavar_and_help(command, declaration):
    params = option_params(ncood_app, command)
    for spec in dataclasses.fields(declaration):
        meta = spec.metadata
        param = params[spec.name]
        assert (meta["name"] or option_name(spec.name)) in param.opts, spec.name
        assert param.help == meta["help"]
        if param.is_flag:
            assert bool(param.secondary_opts) == meta["negatable"], spec.name
        else:
            assert param.metavar == meta["metavar"], spec.name
        required = spec.default is dataclasses.MISSING and (
            spec.default_factory is dataclasses.MISSING
        )
        assert param.required == required, spec.name
    assert set(params) - {f.name for f in dataclasses.fields(declaration)} <= {"quiet", "help"}


def test_the_shown_defaults_are_the_declared_ones():
    params = option_params(ncood_app, "analyze")
    assert params["bootstrap"].default == OodOptions().bootstrap
    assert params["epoch"].default == AnalyzeOptions().epoch
    assert option_params(ncood_app, "extract")["normalize"].default is None  # dataset or weights


def test_the_ood_options_default_to_the_statistics_own_defaults():
    # the declaration stays free of NumPy, so it states the defaults the ood modules use
    from ncood.ood.bootstrap import DEFAULT_RESAMPLES
    from ncood.ood.tuning import DEFAULT_FRACTION, DEFAULT_SEED  # as the statistics use them

    options = OodOptions()
    assert options.bootstrap == DEFAULT_RESAMPLES
    assert (options.tune_fraction, options.tune_seed) == (DEFAULT_FRACTION, DEFAULT_SEED)


def test_building_the_commands_loads_no_numpy():
    code = "import ncood.cli, sys; print(sorted(m for m in sys.modules if m.startswith('numpy')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.fixture
def extended_analyze():
    """AnalyzeOptions with two more fields, as a contributor would add them: nothing else."""
    return dataclasses.make_dataclass(
        "ExtendedAnalyze",
        [
            ("label", str | None, setting(None, help="A label of the analysis.", metavar="TEXT")),
            ("margins", list[float], setting([], help="Margins.", metavar="VALUES")),
        ],
        bases=(AnalyzeOptions,),
        frozen=True,
    )


def test_a_new_analyze_field_is_an_option_that_reaches_the_driver(
    extended_analyze, tiny_dump, tmp_path, monkeypatch
):
    app = app_for("analyze", analyze_command(extended_analyze))
    help_text = runner.invoke(app, ["analyze", "--help"]).output
    assert "--label TEXT" in help_text and "A label of the analysis." in help_text
    assert "--margins VALUES" in help_text

    seen = []
    real = driver.analyze_file

    def spy(*args, options, **kwargs):
        seen.append(options)
        return real(*args, options=options, **kwargs)

    monkeypatch.setattr(driver, "analyze_file", spy)
    path = tmp_path / "f.safetensors"
    save_features(path, tiny_dump)
    args = ["analyze", str(path), "--plugins", "msp", "--bootstrap", "0", "--quiet"]
    out = str(tmp_path / "out")
    result = runner.invoke(app, [*args, "--label", "x", "--margins", "0.5,1", "--out", out])
    assert result.exit_code == 0, result.output
    [options] = seen
    assert options.label == "x" and options.margins == [0.5, 1.0]
    assert options.bootstrap == 0 and options.plugins == ["msp"]
    assert (tmp_path / "out" / "results.json").is_file()
    unset = runner.invoke(app, [*args, "--out", out])
    assert unset.exit_code == 0, unset.output
    assert seen[-1].label is None and seen[-1].margins == []  # the declared defaults


class TinyNetPlugin:
    @ncood.hookimpl
    def register_models(self, register):
        register("test-options-tinynet", TinyNet, "a tiny CNN")


def test_a_new_extract_field_is_an_option_and_recorded_in_the_manifest(plugin_host, tmp_path):
    extended = dataclasses.make_dataclass(
        "ExtendedRequest",
        [("tag", str | None, setting(None, help="A tag.", metavar="TAG", record=True))],
        bases=(ExtractRequest,),
    )
    app = app_for("extract", extract_command(extended))
    assert "--tag TAG" in runner.invoke(app, ["extract", "--help"]).output

    plugin_host(TinyNetPlugin(), "test_options_model_plugin")
    torch.manual_seed(0)
    weights = tmp_path / "tiny.pth"
    torch.save(TinyNet(10, width=5).state_dict(), weights)
    args = ["extract", "--model", "test-options-tinynet", "--model-arg", "width=5"]
    args += ["--weights", str(weights), "--dataset", "digits", "--ood", "noise"]
    args += ["--image-size", "8", "--limit", "16", "--out", str(tmp_path / "run"), "--quiet"]
    result = runner.invoke(app, [*args, "--tag", "first"])
    assert result.exit_code == 0, result.output
    config = RunDir.open(tmp_path / "run").manifest()["config"]
    assert config["tag"] == "first"
    recorded = {
        f.metadata["record"] if isinstance(f.metadata["record"], str) else f.name
        for f in dataclasses.fields(extended)
        if f.metadata["record"]
    }
    assert {key: config[key] for key in recorded} == {
        "dataset_spec": "digits",
        "benchmark": None,
        "ood_specs": ["noise"],
        "image_size": 8,
        "normalize": "dataset",
        "feature_layer": None,
        "limit": 16,
        "tag": "first",
    }
