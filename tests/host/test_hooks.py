"""Every hook is documented and works for a plugin that is not built in (datasette's rule).

A test fails when ``ncood/hookspecs.py`` gains a hook that docs/plugins.md has no section for,
or that no test here registers a non-built-in plugin for.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import ncood
from ncood.cli import app
from ncood.host import hookspecs
from ncood.report.context import ReportSection
from ncood.store.features import save_features

DOCS = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"
runner = CliRunner()


def hook_names() -> list[str]:
    return sorted(
        name
        for name, value in vars(hookspecs).items()
        if callable(value) and hasattr(value, "ncood_spec")
    )


@pytest.fixture
def dump_file(tiny_dump, tmp_path) -> Path:
    path = tmp_path / "features.safetensors"
    save_features(path, tiny_dump)
    return path


def test_hooks_exist():
    assert hook_names() == [
        "register_analyses",
        "register_datasets",
        "register_models",
        "register_presets",
        "register_report_sections",
        "register_scorers",
    ]


@pytest.mark.parametrize("hook", hook_names())
def test_every_hook_is_documented(hook):
    headings = re.findall(r"^### `(\w+)\(", DOCS.read_text(encoding="utf-8"), flags=re.MULTILINE)
    assert hook in headings, f"docs/plugins.md has no '### `{hook}(…)`' section"


def test_every_hook_has_a_test_with_a_non_builtin_plugin():
    assert set(HOOK_TESTS) == set(hook_names())
    for check in HOOK_TESTS.values():
        assert callable(check) or (Path(__file__).parent / check).is_file(), check


def check_scorers(plugin_host, dump_file, tiny_dump, tmp_path):
    class FeatureNorm:
        def __init__(self, power: float = 1.0) -> None:
            self.power = power

        def fit(self, train, head):
            pass

        def score(self, split):
            return np.linalg.norm(split.features, axis=1) ** self.power

    class Plugin:
        @ncood.hookimpl
        def register_scorers(self, register):
            register("test_norm", FeatureNorm, "the feature norm", title="|f|")

    plugin_host(Plugin(), "test_scorer_plugin")
    result = runner.invoke(
        app,
        [
            "analyze",
            str(dump_file),
            "--plugins",
            "test_norm",
            "--set",
            "test_norm.power=2",
            "--out",
            str(tmp_path / "out"),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    assert written["params"]["test_norm"] == {"power": 2.0}
    # OOD blobs sit at the origin, ID clusters far from it: the norm separates them
    assert written["ood"]["blobs"]["test_norm"]["auroc"] == 1.0


def check_analyses(plugin_host, dump_file, tiny_dump, tmp_path):
    class MeanNorm:
        def run(self, dump):
            return {"train": float(np.linalg.norm(dump.train.features, axis=1).mean())}

    class Plugin:
        @ncood.hookimpl
        def register_analyses(self, register):
            register("test_meannorm", MeanNorm, "mean feature norm of ID train")

    plugin_host(Plugin(), "test_analysis_plugin")
    result = runner.invoke(
        app, ["analyze", str(dump_file), "--plugins", "test_meannorm", "--json", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    expected = float(np.linalg.norm(tiny_dump.train.features, axis=1).mean())
    assert json.loads(result.output)["test_meannorm"] == {"train": pytest.approx(expected)}
    assert "analysis test_meannorm" in runner.invoke(app, ["plugins"]).output


def check_report_sections(plugin_host, demo_run, tmp_path):
    templates = tmp_path / "templates"
    (templates / "sections").mkdir(parents=True)
    (templates / "sections" / "count.tex.j2").write_text(
        "\\section{Count}\nThis report covers \\VAR{data.epochs} checkpoints.\n"
    )

    class Plugin:
        @ncood.hookimpl
        def register_report_sections(self, register):
            register(
                ReportSection(
                    "test-count",
                    500,
                    "sections/count.tex.j2",
                    lambda ctx: {"epochs": sum(len(r.results) for r in ctx.runs)},
                    template_dir=templates,
                )
            )

    plugin_host(Plugin(), "test_section_plugin")

    out = tmp_path / "report"
    result = runner.invoke(app, ["report", str(demo_run.root), "--out", str(out), "--no-pdf"])
    assert result.exit_code == 0, result.output
    tex = (out / "ncood-report-fr.tex").read_text()
    epochs = len(demo_run.analyzed_epochs())
    assert f"This report covers {epochs} checkpoints." in tex
    assert "% ncood-section: test-count (plugin test_section_plugin)" in tex


def check_models(plugin_host, tmp_path):
    import torch
    from network_builders import TinyNet

    from ncood.store.features import load_features

    class Plugin:
        @ncood.hookimpl
        def register_models(self, register):
            register("test-tinynet", TinyNet, "a tiny CNN")

    plugin_host(Plugin(), "test_model_plugin")
    torch.manual_seed(0)
    weights = tmp_path / "tiny.pth"
    torch.save({"state_dict": TinyNet(10, width=5).state_dict()}, weights)
    out = tmp_path / "run"
    args = ["extract", "--model", "test-tinynet", "--model-arg", "width=5", "--weights"]
    args += [str(weights), "--dataset", "digits", "--ood", "noise", "--image-size", "8"]
    args += ["--limit", "40", "--out", str(out), "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    (features,) = sorted((out / "features").glob("*.safetensors"))
    dump = load_features(features)
    assert dump.train.features.shape[1] == 5 and dump.head.weight.shape == (10, 5)
    assert "model test-tinynet" in runner.invoke(app, ["plugins"]).output


def tiny_dataset(context):
    """A 4-class synthetic set small enough to train on in a second."""
    from ncood.datasets import synthetic_set

    return synthetic_set(96, 48, num_classes=4, seed=3)


def static_images(context, ind):
    """As many grey-noise OOD images as the in-distribution test split."""
    import torch

    from ncood.datasets import ood_set

    generator = torch.Generator().manual_seed(5)
    grey = torch.randint(0, 256, (len(ind.test), 1, 32, 32), generator=generator)
    return ood_set(grey.to(torch.uint8).repeat(1, 3, 1, 1))


def check_datasets(plugin_host, tmp_path):
    from ncood.store.run import RunDir

    class Plugin:
        @ncood.hookimpl
        def register_datasets(self, register):
            register("test-blobs", tiny_dataset, "4 synthetic classes")
            register("test-static", ood=static_images, description="grey noise")

    plugin_host(Plugin(), "test_dataset_plugin")
    args = ["train", "--preset", "demo-standard", "--dataset", "test-blobs", "--ood"]
    args += ["test-static", "--epochs", "1", "--width", "4", "--quiet"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    run = RunDir.open(tmp_path / "run")
    assert run.manifest()["config"]["dataset"] == "test-blobs"
    dump = ncood.load_features(run.features(run.feature_epochs()[-1]))
    assert dump.head.weight.shape[0] == 4 and len(dump.test.labels) == 48
    assert set(dump.ood) == {"test-static"} and len(dump.ood["test-static"].labels) == 48
    listed = runner.invoke(app, ["plugins"]).output
    assert "dataset test-blobs" in listed and "dataset test-static" in listed
    # a role a plugin did not register is still an unknown name
    result = runner.invoke(app, [*args[:4], "test-static", "--out", "x", "--dry-run"])
    assert result.exit_code == 1 and "test-static" in result.output


def check_presets(plugin_host, tmp_path):
    from ncood.store.run import RunDir
    from ncood.store.train_config import TrainConfig

    class Plugin:
        @ncood.hookimpl
        def register_datasets(self, register):
            register("test-blobs", tiny_dataset, "4 synthetic classes")

        @ncood.hookimpl
        def register_presets(self, register):
            config = TrainConfig(
                preset="test-tiny",
                dataset="test-blobs",
                ood=["noise"],
                epochs=2,
                width=4,
                batch_size=32,
                checkpoint_every=1,
                schedule="cosine",
            )
            register(config, "two epochs on 96 images")

    plugin_host(Plugin(), "test_preset_plugin")
    assert "test-tiny" in runner.invoke(app, ["presets"]).output
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--preset", "test-tiny", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    run = RunDir.open(out)
    config = run.manifest()["config"]
    assert (config["preset"], config["dataset"], config["epochs"]) == ("test-tiny", "test-blobs", 2)
    assert run.feature_epochs() == [1, 2]
    assert "preset test-tiny" in runner.invoke(app, ["plugins"]).output


HOOK_TESTS = {
    # and tests/host/test_network_scorer_plugin.py: a non-built-in network scorer through the same
    # hook, on a trained run and on an imported one (beside the fixtures of runs with weights)
    "register_scorers": check_scorers,
    "register_analyses": check_analyses,
    "register_report_sections": check_report_sections,
    "register_models": check_models,
    "register_datasets": check_datasets,
    "register_presets": check_presets,
}


def test_a_non_builtin_scorer_plugin(plugin_host, dump_file, tiny_dump, tmp_path):
    check_scorers(plugin_host, dump_file, tiny_dump, tmp_path)


def test_a_non_builtin_analysis_plugin(plugin_host, dump_file, tiny_dump, tmp_path):
    check_analyses(plugin_host, dump_file, tiny_dump, tmp_path)


def test_a_non_builtin_report_section_plugin(
    plugin_host, third_party_sections_only, demo_run, tmp_path
):
    check_report_sections(plugin_host, demo_run, tmp_path)


def test_a_non_builtin_model_plugin(plugin_host, tmp_path):
    check_models(plugin_host, tmp_path)


def test_a_non_builtin_dataset_plugin(plugin_host, tmp_path, one_torch_thread):
    check_datasets(plugin_host, tmp_path)


def test_a_non_builtin_preset_plugin(plugin_host, tmp_path, one_torch_thread):
    check_presets(plugin_host, tmp_path)
