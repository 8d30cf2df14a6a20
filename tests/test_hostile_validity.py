"""Results that look valid and are not: settings that give every sample the same score are
refused before any work; constant scores that get through are marked degenerate (results.json,
a warning, the report never calls them the best); ``--verify`` hashes the checkpoints of the
model-based scorers; a ``folder:`` OOD set whose images were replaced is not scored."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from cli_helpers import one_line_error, runner, train
from conftest import make_dump

import ncood
from ncood.cli import app
from ncood.errors import NcoodError
from ncood.store.features import save_features
from ncood.store.run import RunDir

FOLDER_IMAGES = 8


@pytest.fixture(scope="module")
def features(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("features") / "features.safetensors"
    save_features(path, make_dump())
    return path


def write_image(path: Path, colour: tuple[int, int, int]) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), colour).save(path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small trained run whose OOD sets are ``noise`` and a folder of 8 plain images."""
    root = tmp_path_factory.mktemp("trained")
    for index in range(FOLDER_IMAGES):
        write_image(root / "textures" / f"{index}.png", (30 * index, 255 - 30 * index, 90))
    out = root / "run"
    result = train("--epochs", "1", "--ood", f"noise,folder:{root / 'textures'}", "--out", str(out))
    assert result.exit_code == 0, result.output
    return RunDir.open(out)


def copied(run: RunDir, where: Path) -> RunDir:
    shutil.copytree(run.root, where, ignore=shutil.ignore_patterns("analysis"))
    return RunDir.open(where)


# --- refused by construction ----------------------------------------------------------------

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


# --- constant scores that get through -------------------------------------------------------


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


# --- --verify and the checkpoints --------------------------------------------------------------


def flip_a_byte_keeping_size_and_mtime(path: Path) -> None:
    info = path.stat()
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01  # in the last tensor's data: the file still parses
    path.write_bytes(bytes(data))
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert path.stat().st_size == info.st_size and path.stat().st_mtime_ns == info.st_mtime_ns


def test_verify_catches_a_flipped_byte_in_a_checkpoint(trained, tmp_path):
    run = copied(trained, tmp_path / "run")
    epoch = run.feature_epochs()[-1]
    flip_a_byte_keeping_size_and_mtime(run.checkpoint(epoch))
    args = ["analyze", str(run.root), "--plugins", "odin", "--quiet"]
    one_line_error(runner.invoke(app, [*args, "--verify"]), run.checkpoint(epoch).name)
    assert not (run.root / "analysis").exists()


def test_verify_passes_intact_checkpoints(trained, tmp_path):
    from ncood.extraction.rerun import check_rebuildable

    run = copied(trained, tmp_path / "run")
    for epoch in run.feature_epochs():
        check_rebuildable(run, epoch, verify=True)


# --- a folder of OOD images replaced -------------------------------------------------------------


def test_a_replaced_folder_image_is_refused_for_odin(trained, tmp_path):
    from ncood.extraction.rerun import load_run_data

    manifest = trained.manifest()
    spec = next(s for s in manifest["config"]["ood"] if s.startswith("folder:"))
    folder = tmp_path / "elsewhere" / Path(spec.removeprefix("folder:")).name
    shutil.copytree(spec.removeprefix("folder:"), folder)
    run = copied(trained, tmp_path / "run")
    manifest["config"]["ood"] = [
        s if s != spec else f"folder:{folder}" for s in manifest["config"]["ood"]
    ]
    (run.root / "manifest.json").write_text(json.dumps(manifest))
    assert "digests" in manifest["dataset"]
    load_run_data(run)  # the copy holds the same images: accepted

    write_image(folder / "3.png", (0, 0, 0))  # another image, the same count
    assert len(list(folder.iterdir())) == FOLDER_IMAGES
    with pytest.raises(NcoodError):
        load_run_data(run)
    result = runner.invoke(app, ["analyze", str(run.root), "--plugins", "odin", "--quiet"])
    one_line_error(result, "textures")  # the set, named by its folder
    assert not (run.root / "analysis").exists()


def test_runs_without_digests_stay_readable(trained, tmp_path):
    from ncood.extraction.rerun import load_run_data

    run = copied(trained, tmp_path / "run")
    manifest = run.manifest()
    del manifest["dataset"]["digests"]
    (run.root / "manifest.json").write_text(json.dumps(manifest))
    assert set(load_run_data(run).splits) >= {"train", "test", "ood/textures"}
