"""Parameters given on the command line: ``--set`` values that would run unbounded or fail
deep inside (and the bounds themselves, which are accepted), seeds out of range, ``--device
meta``, ``--precision`` and ``--batch-size`` (scores that must not depend on the batching, and
what results.json records of both), a tailsize larger than the data, and flags shown as flags.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from cli_helpers import runner
from hostile_helpers import analyze_run as analyze
from hostile_helpers import one_line_error
from network_builders import imported_run, tiny_network

from ncood.cli import app
from ncood.host.loading import host
from ncood.host.network import Batches
from ncood.store.run import RunDir
from ncood.store.scores_file import load_scores_beside


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """An imported run (weights file, resnet18-cifar) for the network scorers."""
    return imported_run(tmp_path_factory.mktemp("imported"))


def fresh(run: RunDir, where) -> RunDir:
    """A copy of ``run`` with no analysis yet."""
    shutil.copytree(run.root, where, ignore=shutil.ignore_patterns("analysis"))
    return RunDir.open(where)


def results_and_scores(run: RunDir) -> tuple[dict, dict]:
    epoch = run.feature_epochs()[-1]
    results = json.loads(run.results(epoch).read_text())
    return results, load_scores_beside(run.analysis_dir(epoch), results)


# -- --batch-size and --precision: scores that do not depend on them, both recorded ----------------


@pytest.mark.parametrize("mode", ["mean", "var"])
def test_mcd_scores_do_not_depend_on_the_batch_size(imported, tmp_path, mode):
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


def test_the_precision_is_recorded(imported, tmp_path):
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


# -- --set values and --device: refused before any work, the bounds accepted -----------------------


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
def test_bad_parameters_are_refused_before_any_work(imported, tmp_path, plugins, settings):
    run = fresh(imported, tmp_path / "run")
    sets = [arg for setting in settings for arg in ("--set", setting)]
    one_line_error(analyze(run, "--plugins", f"{plugins},msp", *sets))
    assert not (run.root / "analysis").exists()


def test_the_bounds_themselves_are_accepted():
    registry = host().scorers()
    registry.get("mcd").build({"samples": "1000", "seed": str(2**63 - 1)})
    registry.get("gram").build({"poles": "20", "seed": "0"})
    registry.get("rankfeat").build({"power_iterations": "1000"})


def test_device_meta_is_refused_before_any_work(imported, tmp_path):
    run = fresh(imported, tmp_path / "run")
    for plugins in ("mcd,msp", "knn,msp"):
        one_line_error(analyze(run, "--plugins", plugins, "--device", "meta"), "meta")
        assert not (run.root / "analysis").exists()


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


# -- flags -----------------------------------------------------------------------------------------


def test_help_shows_flags_as_flags():
    for command in ("train", "analyze", "report", "plugins"):
        text = runner.invoke(app, [command, "--help"], terminal_width=200).output
        assert "<bool>" not in text, text
    analyze_help = runner.invoke(app, ["analyze", "--help"], terminal_width=200).output
    assert "--quiet" in analyze_help and "--no-quiet" not in analyze_help
