"""The documentation's code runs: the "Python API" blocks of README.md and docs/plugins.md, and
every hook example of docs/plugins.md, registered as a real (non-built-in) plugin."""

from __future__ import annotations

import re
import shutil
import types
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ncood.cli import app
from ncood.host.loading import host

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def section_of(path: Path, heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same or a higher level."""
    text = path.read_text(encoding="utf-8")
    level = heading.split(" ")[0]
    start = text.index(f"\n{heading}\n")
    following = re.search(rf"^#{{1,{len(level)}}} ", text[start + len(heading) + 2 :], re.M)
    end = start + len(heading) + 2 + following.start() if following else len(text)
    return text[start:end]


def blocks(path: Path, heading: str, language: str = "python") -> list[str]:
    return [code for lang, code in FENCE.findall(section_of(path, heading)) if lang == language]


@pytest.fixture
def in_demo_folder(demo_run, tmp_path, monkeypatch):
    """A folder holding ``runs/demo-standard`` (the shared demo run), made the working dir."""
    shutil.copytree(demo_run.root, tmp_path / "runs" / "demo-standard")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("doc", ["README.md", "docs/plugins.md"])
def test_python_api_blocks_run(doc, in_demo_folder, capsys):
    found = blocks(ROOT / doc, "## Python API")
    assert found, f"{doc} has no python block under '## Python API'"
    for code in found:
        exec(compile(code, f"{doc}:Python API", "exec"), {"__name__": "docs_example"})
    printed = capsys.readouterr().out
    if doc == "docs/plugins.md":
        assert "['mahalanobis']" in printed  # the comment beside list_scorers tells the truth


def hook_example(title: str) -> types.ModuleType:
    """The python block of a hook's section, executed as a module of its own."""
    (code,) = blocks(ROOT / "docs" / "plugins.md", f"### `{title}(register)`")
    module = types.ModuleType(f"docs_{title}")
    module.__file__ = str(ROOT / "docs" / "example.py")
    exec(compile(code, f"docs/plugins.md:{title}", "exec"), module.__dict__)
    return module


def test_scorer_example_scores_higher_for_id(plugin_host, tiny_dump):
    module = hook_example("register_scorers")
    plugin_host(module, module.__name__)
    scorer = host().scorers().get("negnorm").create()
    scorer.fit(tiny_dump.train, tiny_dump.head)
    assert scorer.score(tiny_dump.test).shape == (len(tiny_dump.test),)


def test_analysis_example_runs_on_a_dump(plugin_host, tiny_dump):
    module = hook_example("register_analyses")
    plugin_host(module, module.__name__)
    result = host().analyses().get("meannorm").create().run(tiny_dump)
    assert set(result) == set(tiny_dump.splits())
    expected = np.linalg.norm(tiny_dump.test.features, axis=1).mean()
    assert result["test"] == pytest.approx(expected)


def test_report_section_example_renders(plugin_host, third_party_sections_only, demo_run, tmp_path):
    module = hook_example("register_report_sections")
    (template,) = blocks(
        ROOT / "docs" / "plugins.md", "### `register_report_sections(register)`", "latex"
    )
    (tmp_path / "templates" / "sections").mkdir(parents=True)
    (tmp_path / "templates" / "sections" / "checkpoints.tex.j2").write_text(template)
    module.TEMPLATES = tmp_path / "templates"
    plugin_host(module, module.__name__)

    out = tmp_path / "report"
    result = CliRunner().invoke(
        app, ["report", str(demo_run.root), "--lang", "en", "--out", str(out), "--no-pdf"]
    )
    assert result.exit_code == 0, result.output
    tex = (out / "ncood-report-en.tex").read_text()
    assert f"{len(demo_run.analyzed_epochs())} analyzed checkpoints." in tex


def test_dataset_example_loads_both_roles(plugin_host, tmp_path):
    from ncood.datasets import load_data

    module = hook_example("register_datasets")
    plugin_host(module, module.__name__)
    ind, ood = load_data("stripes", ["checkers"], tmp_path, download=False)
    assert ind.num_classes == 2 and ind.train.images.shape == (1000, 3, 32, 32)
    assert set(ind.train.labels.tolist()) == {0, 1}
    assert ood["checkers"].images.shape == (200, 3, 32, 32)
    assert set(ood["checkers"].labels.tolist()) == {-1}


def test_preset_example_resolves_and_trains_dry(plugin_host):
    from ncood.engine.presets import resolve_preset

    module = hook_example("register_presets")
    plugin_host(module, module.__name__)
    config = resolve_preset("cifar10-short")
    assert (config.dataset, config.epochs) == ("cifar10", 30)
    assert config.checkpoint_epochs == [5, 10, 15, 20, 25, 30]
    result = CliRunner().invoke(
        app, ["train", "--preset", "cifar10-short", "--out", "x", "--dry-run", "--epochs", "10"]
    )
    assert result.exit_code == 0, result.output
    assert '"epochs": 10' in result.output
