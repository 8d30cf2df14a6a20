"""The CLI through CliRunner, and once as a real subprocess of the installed entry point."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from ncood.cli import app

runner = CliRunner()


def test_version_and_help():
    assert runner.invoke(app, ["--version"]).output.startswith("ncood ")
    result = runner.invoke(app, [])
    assert "train" in result.output and "analyze" in result.output


def test_plugins_lists_the_builtins():
    result = runner.invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert rows["scorers.logits"]["builtin"]
    assert "scorer msp" in rows["scorers.logits"]["contributes"]
    assert "analysis nc" in rows["analyses.neural_collapse"]["contributes"]


def test_unknown_preset_is_one_line_without_traceback(tmp_path):
    result = runner.invoke(app, ["train", "--preset", "nope", "--out", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert "unknown preset 'nope'" in result.output
    assert "demo-standard" in result.output
    assert "Traceback" not in result.output


def test_dry_run_prints_the_resolved_config():
    result = runner.invoke(app, ["train", "--preset", "tp-600", "--out", "x", "--dry-run"])
    config = json.loads(result.output)
    assert config["epochs"] == 600 and config["milestones"] == [300, 450]
    result = runner.invoke(
        app, ["train", "--preset", "demo-extended", "--out", "x", "--dry-run", "--epochs", "40"]
    )
    assert json.loads(result.output)["milestones"] == [20, 30]


def test_missing_path_and_unknown_plugin(tmp_path, demo_run):
    result = runner.invoke(app, ["analyze", str(tmp_path / "missing")])
    assert result.exit_code == 1 and "no such run directory" in result.output
    result = runner.invoke(app, ["analyze", str(demo_run.root), "--plugins", "msp,bogus"])
    assert result.exit_code != 0
    assert "unknown plugin 'bogus'" in result.output and "maxlogit" in result.output


def test_analyze_a_features_file_directly(tmp_path, demo_run):
    features = demo_run.features(demo_run.feature_epochs()[-1])
    out = tmp_path / "analysis"
    result = runner.invoke(
        app,
        [
            "analyze",
            str(features),
            "--plugins",
            "msp,energy,nc",
            "--json",
            "--quiet",
            "--set",
            "energy.T=2",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    results = json.loads(result.output)
    assert set(results["ood"]["photos"]) == {"msp", "energy"}
    assert results["params"]["energy"] == {"T": 2.0}
    assert "nc1" in results["nc"]
    assert json.loads((out / "results.json").read_text()) == results


def test_bad_set_names_what_exists(demo_run):
    result = runner.invoke(
        app, ["analyze", str(demo_run.root), "--plugins", "energy", "--set", "energy.tau=2"]
    )
    assert result.exit_code == 1
    assert "has no parameter 'tau'" in result.output and "T" in result.output


def test_real_subprocess_of_the_installed_entry_point():
    exe = shutil.which("ncood", path=str(Path(sys.executable).parent)) or shutil.which("ncood")
    assert exe, "the ncood entry point is not installed"
    done = subprocess.run(
        [exe, "train", "--preset", "nope", "--out", "x"],
        capture_output=True,
        text=True,
        env={**os.environ},
        check=False,
    )
    assert done.returncode == 1
    assert (
        done.stderr.strip().splitlines() == [done.stderr.strip().splitlines()[0]]
        and "unknown preset" in done.stderr
    )
    done = subprocess.run([exe, "plugins"], capture_output=True, text=True, check=True)
    assert "scorers.logits" in done.stdout
