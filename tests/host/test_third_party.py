"""A third-party plugin, installed for real, shows up through the entry point everywhere."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ncood-example-scorer"


@pytest.fixture(scope="module")
def example_site(tmp_path_factory) -> Path:
    """The example package pip-installed into its own folder (not into the shared venv)."""
    site = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(EXAMPLE),
        ],
        check=True,
        capture_output=True,
    )
    return site


def ncood(site: Path, *args: str, load: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "NCOOD_LOAD_PLUGINS"}
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if load is not None:
        env["NCOOD_LOAD_PLUGINS"] = load
    return subprocess.run(
        [sys.executable, "-m", "ncood", *args], capture_output=True, text=True, env=env
    )


def test_listed_by_plugins(example_site):
    done = ncood(example_site, "plugins", "--json")
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert rows["example_scorer"]["distribution"] == "ncood-example-scorer"
    assert rows["example_scorer"]["builtin"] is False
    assert rows["example_scorer"]["contributes"] == ["scorer featnorm"]


def test_env_var_keeps_it_out(example_site):
    done = ncood(example_site, "plugins", "--json", load="")
    names = {row["name"] for row in json.loads(done.stdout)}
    assert "example_scorer" not in names and "scorers.logits" in names


def test_scores_in_results_and_report(example_site, demo_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(demo_run.root, run)
    done = ncood(
        example_site,
        "analyze",
        str(run),
        "--plugins",
        "msp,featnorm",
        "--set",
        "featnorm.p=2",
        "--json",
        "--quiet",
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert 0.0 <= results["ood"]["photos"]["featnorm"]["auroc"] <= 1.0
    assert results["params"]["featnorm"] == {"p": 2.0, "sign": 1}
    done = ncood(example_site, "report", str(run), "--out", str(tmp_path / "rep"), "--no-pdf")
    assert done.returncode == 0, done.stderr
    assert "Feature norm" in (tmp_path / "rep" / "ncood-report-fr.tex").read_text()
