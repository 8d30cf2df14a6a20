"""Issue 24's smaller points, attacked through the CLI on a small imported run: scores that
depended on the batch size, what results.json did not record, parameters that ran unbounded
or failed deep inside, and one-line messages that named the wrong cause."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from cli_helpers import one_line_error, runner
from test_network_scorer_plugin import imported  # noqa: F401  (the fixture: a small imported run)
from test_network_scorers import tiny_network

from ncood.cli import app
from ncood.host.loading import host
from ncood.host.network import Batches
from ncood.store.features import Split
from ncood.store.run import RunDir
from ncood.store.scores_file import load_scores_beside


def fresh(run: RunDir, where) -> RunDir:
    """A copy of ``run`` with no analysis yet."""
    shutil.copytree(run.root, where, ignore=shutil.ignore_patterns("analysis"))
    return RunDir.open(where)


def analyze(run: RunDir, *args: str):
    return runner.invoke(app, ["analyze", str(run.root), "--quiet", "--bootstrap", "0", *args])


def results_and_scores(run: RunDir) -> tuple[dict, dict]:
    epoch = run.feature_epochs()[-1]
    results = json.loads(run.results(epoch).read_text())
    return results, load_scores_beside(run.analysis_dir(epoch), results)


# ---- mcd does not depend on how the images are batched; the batching is recorded


@pytest.mark.parametrize("mode", ["mean", "var"])
def test_mcd_scores_do_not_depend_on_the_batch_size(imported, tmp_path, mode):  # noqa: F811
    """ResNet-18 has no dropout module: mcd drops the head's input. Batches of 7 cut across
    mcd's chunks, batches of 64 hold the whole split; the scores agree to 1e-12 (absolute)."""
    scores = {}
    for size in (7, 64):
        run = fresh(imported, tmp_path / str(size))
        result = analyze(
            run, "--plugins", "mcd", "--batch-size", str(size), "--set", "mcd.samples=4",
            "--set", f"mcd.mode={mode}", "--set", "mcd.p=0.5",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        results, per_scorer = results_and_scores(run)
        network = results["params"]["mcd"]["network"]
        assert (network["batch_size"], network["precision"]) == (size, "fp32")
        scores[size] = per_scorer["mcd"]
    assert set(scores[7]) == set(scores[64]) and "test" in scores[7]
    for split, values in scores[7].items():
        np.testing.assert_allclose(values, scores[64][split], rtol=0, atol=1e-12, err_msg=split)
    assert np.unique(scores[7]["test"]).size > 1  # real dropout draws, not a constant


def test_mcd_with_dropout_modules_does_not_depend_on_the_batch_size():
    """The network's own dropout, whole forwards: batches of 7 and of 64 give the same scores
    to 1e-12 (absolute)."""
    network = tiny_network(dropout=True)
    images = torch.randn(70, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    labels = torch.zeros(70, dtype=torch.int64)

    def batches(size: int) -> Batches:
        def produce():
            for start in range(0, len(images), size):
                yield images[start : start + size], labels[start : start + size]

        return Batches("test", len(images), labels.numpy(), produce)

    scorer = host().scorers().get("mcd").create(samples=5, mode="var", seed=3)
    small, large = (scorer.score(network, batches(size)) for size in (7, 64))
    np.testing.assert_allclose(small, large, rtol=0, atol=1e-12)
    assert np.unique(small).size > 1


def test_the_precision_is_recorded(imported, tmp_path):  # noqa: F811
    run = fresh(imported, tmp_path / "run")
    result = analyze(
        run, "--plugins", "mcd,msp", "--precision", "bf16", "--batch-size", "16",
        "--set", "mcd.samples=2",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    results, _ = results_and_scores(run)
    assert results["params"]["mcd"]["network"]["precision"] == "bf16"
    assert results["params"]["mcd"]["network"]["batch_size"] == 16
    assert "network" not in results["params"]["msp"]  # feature-level: no network ran


# ---- parameters that ran unbounded, gave constant scores or failed deep inside


@pytest.mark.parametrize(
    ("plugins", "settings"),
    [
        ("mcd", ["mcd.samples=1000000000"]),
        ("mcd", ["mcd.samples=1001"]),
        ("mcd", ["mcd.mode=var", "mcd.p=0"]),
        ("mcd", [f"mcd.seed={2**70}"]),
        ("mcd", ["mcd.seed=-1"]),
        ("gram", ["gram.poles=1000000"]),
        ("gram", [f"gram.seed={2**64}"]),
        ("rankfeat", ["rankfeat.power_iterations=1000000000"]),
        ("knn", ["knn.seed=-5"]),
        ("nnguide", [f"nnguide.seed={2**70}"]),
    ],
)
def test_bad_parameters_are_refused_before_any_work(imported, tmp_path, plugins, settings):  # noqa: F811
    run = fresh(imported, tmp_path / "run")
    sets = [arg for setting in settings for arg in ("--set", setting)]
    one_line_error(analyze(run, "--plugins", f"{plugins},msp", *sets))
    assert not (run.root / "analysis").exists()


def test_the_bounds_themselves_are_accepted():
    registry = host().scorers()
    registry.get("mcd").build({"samples": "1000", "seed": str(2**63 - 1)})
    registry.get("gram").build({"poles": "20", "seed": "0"})
    registry.get("rankfeat").build({"power_iterations": "1000"})


# ---- messages that named the wrong cause


def test_device_meta_is_refused_before_any_work(imported, tmp_path):  # noqa: F811
    run = fresh(imported, tmp_path / "run")
    for plugins in ("mcd,msp", "knn,msp"):
        one_line_error(analyze(run, "--plugins", plugins, "--device", "meta"), "meta")
        assert not (run.root / "analysis").exists()


def test_a_changed_absolute_folder_names_the_folder(tmp_path):
    """An image gone from an absolute ``folder:`` OOD set: --data-dir has no say over it, so
    the line names the folder (as given at extraction) rather than asking for --data-dir."""
    from PIL import Image

    from ncood.engine.resnet import ResNet18

    folder = (tmp_path / "textures").resolve()
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(6):
        pixels = (rng.random((20, 20, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{index}.png")
    torch.manual_seed(3)
    torch.save(ResNet18(10, width=4).state_dict(), tmp_path / "w.pth")
    args = ["extract", "--model", "resnet18-cifar", "--model-arg", "width=4", "--weights"]
    args += [str(tmp_path / "w.pth"), "--dataset", "digits", "--ood", f"folder:{folder}"]
    args += ["--image-size", "24", "--limit", "20", "--out", str(tmp_path / "run"), "--quiet"]
    assert runner.invoke(app, args).exit_code == 0
    (folder / "3.png").unlink()
    run = RunDir.open(tmp_path / "run")
    line = one_line_error(analyze(run, "--plugins", "mcd", "--set", "mcd.samples=2"))
    assert str(folder) in line and "--data-dir" not in line
    assert not (run.root / "analysis").exists()


def test_tscaling_on_constant_logits_uses_t_1(capsys):
    """Every sample the same logits: the NLL falls towards the uniform softmax, which used to
    pin T at the bound of 100; T = 1 is used and said, in one warning line."""
    labels = np.arange(60) % 3
    logits = np.tile(np.float32([5.0, 0.0, 0.0]), (60, 1))
    train = Split(np.zeros((60, 4), np.float32), logits, labels)
    scorer, _ = host().scorers().get("tscaling").build({})
    scorer.fit(train, None)
    assert scorer.resolved_params["T"] == 1.0
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    varied = Split(np.zeros((60, 4), np.float32), logits + np.eye(3)[labels], labels)
    scorer.fit(varied, None)  # logits that do vary are still fitted
    assert scorer.resolved_params["T"] != 1.0


def test_openmax_records_the_tailsize_it_used(tiny_dump, capsys):
    """The tiny dump has 30 train samples per class: a tailsize of 1000 uses 30, and says so."""
    per_class = int(np.bincount(tiny_dump.train.labels).max())
    scorer = host().scorers().get("openmax").create(tailsize=1000)
    scorer.fit(tiny_dump.train, tiny_dump.head)
    assert scorer.resolved_params["tailsize"] == per_class
    assert capsys.readouterr().err.strip()  # a warning line
    used = host().scorers().get("openmax").create(tailsize=per_class)
    used.fit(tiny_dump.train, tiny_dump.head)
    np.testing.assert_array_equal(scorer.score(tiny_dump.test), used.score(tiny_dump.test))
    small = host().scorers().get("openmax").create(tailsize=5)
    small.fit(tiny_dump.train, tiny_dump.head)
    assert small.resolved_params["tailsize"] == 5
