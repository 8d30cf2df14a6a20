"""Issue #24 §2: results.json and its scores file are one unit. A kill at any step of the write
leaves the old pair or the new one; scores that are lost (deleted, swapped, damaged) never
leave their scorers' metrics standing; the report names no "best" over scorers it has no
scores for, and its "best" is the table's."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from nc_builders import noisy_dump
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
from typer.testing import CliRunner

from ncood.cli import app
from ncood.errors import NcoodError
from ncood.report.build import core_templates
from ncood.report.context import ReportContext, load_analyzed_run, load_strings
from ncood.store.atomic import folder_lock
from ncood.store.features import save_features
from ncood.store.scores_file import LEGACY_NAME, is_scores_file, load_scores_beside, scores_path
from ncood_plugins.sections import ood as report_ood

runner = CliRunner()
SCORERS = "msp,energy,vim"


def analyze(*args) -> object:
    return runner.invoke(app, ["analyze", *map(str, args), "--quiet", "--bootstrap", "50"])


def results_of(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def listed(results: dict) -> set[str]:
    return {s for per in results["ood"].values() for s in per}


def checked_pair(out: Path) -> tuple[dict, dict]:
    """results.json and the scores beside it, checked to be one pair: the file it names is
    there with its id and lengths, and holds the scores of exactly the scorers it lists."""
    results = results_of(out)
    scores = load_scores_beside(out, results)  # raises on a missing / foreign / short file
    assert set(scores) == listed(results)
    for scorer in listed(results):
        assert {"test", *(f"ood/{o}" for o in results["ood"])} <= set(scores[scorer])
    verdict = results.get("significance", {}).get("ood", {})
    for ood, found in verdict.items():  # the comparisons are over exactly the scorers listed
        assert set(found["pairs"]) == set(results["ood"][ood])
    return results, scores


def leftovers(out: Path) -> list[str]:
    """What the folder holds besides results.json and the one scores file it names."""
    named = scores_path(out, results_of(out)).name
    return sorted(p.name for p in out.iterdir() if p.name not in ("results.json", named))


@pytest.fixture
def features(tmp_path) -> Path:
    path = tmp_path / "features.safetensors"
    save_features(path, noisy_dump(num_classes=4, dim=8, seed=1))  # OOD sets near, far
    return path


def as_legacy(out: Path) -> None:
    """The folder as an ncood before generations wrote it: scores.safetensors, and a
    results.json that records the id but names no file."""
    results = results_of(out)
    scores_path(out, results).rename(out / LEGACY_NAME)
    results["scores_file"].pop("name", None)
    (out / "results.json").write_text(json.dumps(results, indent=2))


# -- a kill at every step of the write -----------------------------------------------------------

# The analysis in a child process that SIGKILLs itself just before (or just after) its Nth call
# of the operations that change what is on disk for good or make it durable.
KILLED_CHILD = textwrap.dedent(
    """
    import atexit, os, signal, sys
    from ncood.cli import main
    point, when = int(sys.argv[1]), sys.argv[2]
    seen = [0]
    def traced(operation):
        def call(*args, **kwargs):
            seen[0] += 1
            if seen[0] == point and when == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            result = operation(*args, **kwargs)
            if seen[0] == point and when == "after":
                os.kill(os.getpid(), signal.SIGKILL)
            return result
        return call
    for name in ("replace", "rename", "unlink", "remove", "rmdir", "fsync"):
        setattr(os, name, traced(getattr(os, name)))
    atexit.register(lambda: print(f"operations={seen[0]}", file=sys.stderr))
    sys.argv = ["ncood", *sys.argv[3:]]
    main()
    """
)


@pytest.mark.parametrize("start", ["generation", "legacy"])
def test_a_kill_at_any_step_leaves_the_old_pair_or_the_new_one(tmp_path, features, start):
    first = tmp_path / "first"
    assert analyze(features, "--plugins", SCORERS, "--out", first).exit_code == 0
    if start == "legacy":
        as_legacy(first)
    old_text = (first / "results.json").read_text()
    _, old_scores = checked_pair(first)
    rerun = ["--plugins", "msp,energy", "--set", "energy.T=2"]
    reference = tmp_path / "reference"  # the same rerun, not killed
    shutil.copytree(first, reference)
    assert analyze(features, *rerun, "--out", reference).exit_code == 0
    new_results, new_scores = checked_pair(reference)
    assert new_results["params"]["energy"]["T"] == 2.0

    outcomes, point = set(), 0
    while True:
        point += 1
        for when in ("before", "after"):
            out = tmp_path / f"killed-{point}-{when}"
            shutil.copytree(first, out)
            child = subprocess.run(
                [sys.executable, "-c", KILLED_CHILD, str(point), when, "analyze", features]
                + [*rerun, "--bootstrap", "50", "--quiet", "--out", out],
                capture_output=True,
                text=True,
                timeout=120,
            )
            killed = child.returncode == -signal.SIGKILL
            assert killed or child.returncode == 0, child.stderr
            results, scores = checked_pair(out)
            if (out / "results.json").read_text() == old_text:  # the old pair, whole
                outcomes.add("old")
                assert set(scores) == set(old_scores)
                for scorer, per_split in old_scores.items():
                    for split, values in per_split.items():
                        np.testing.assert_array_equal(scores[scorer][split], values)
            else:  # the new pair, whole: what the uninterrupted rerun wrote
                outcomes.add("new")
                assert results["params"] == new_results["params"]
                assert set(scores) == set(new_scores) == listed(new_results)
                for scorer, per_split in new_scores.items():  # another process: same values
                    for split, values in per_split.items():
                        np.testing.assert_allclose(scores[scorer][split], values, rtol=1e-12)
            # the next analysis starts from it cleanly: nothing lost, nothing left behind
            after = analyze(features, "--plugins", "msp", "--out", out)
            assert after.exit_code == 0, after.output
            assert listed(checked_pair(out)[0]) == {"msp", "energy", "vim"}
            assert leftovers(out) == []
            shutil.rmtree(out)
        if not killed:
            break
    # every step was reached: two renames and their fsyncs at least, on both sides of them
    assert point >= 5 and outcomes == {"old", "new"}, (point, outcomes)


def test_a_killed_write_leaves_no_scores_file_that_is_ever_read(tmp_path, features):
    """A scores file the killed writer made before its switch is not what results.json
    names; the next write removes it (and the temp files of the dead writer)."""
    out = tmp_path / "out"
    assert analyze(features, "--plugins", SCORERS, "--out", out).exit_code == 0
    orphan = out / ("scores-" + "ab" * 16 + ".safetensors")
    shutil.copyfile(scores_path(out, results_of(out)), orphan)
    assert is_scores_file(orphan.name) and scores_path(out, results_of(out)) != orphan
    assert analyze(features, "--plugins", "msp", "--out", out).exit_code == 0
    assert not orphan.exists() and leftovers(out) == []


@pytest.mark.skipif(sys.platform == "win32", reason="folders are not locked on Windows")
def test_two_writers_of_one_folder_take_turns(tmp_path, features):
    """A write waits while another holds the folder, then merges into what that one wrote."""
    out = tmp_path / "out"
    assert analyze(features, "--plugins", "msp", "--out", out).exit_code == 0
    finished = []
    with folder_lock(out):  # another writer, between its read and its switch
        second = threading.Thread(
            target=lambda: finished.append(analyze(features, "--plugins", "energy", "--out", out))
        )
        second.start()
        second.join(timeout=1.0)
        assert second.is_alive() and not finished  # waiting, nothing written meanwhile
        assert listed(results_of(out)) == {"msp"}
    second.join(timeout=60)
    assert finished and finished[0].exit_code == 0, finished
    assert listed(checked_pair(out)[0]) == {"msp", "energy"} and leftovers(out) == []


# -- scores that are lost: never half kept -------------------------------------------------------


def delete(out: Path, other: Path) -> None:
    scores_path(out, results_of(out)).unlink()


def swap(out: Path, other: Path) -> None:
    """Another write's scores file (same features, same scorers) under this one's name."""
    shutil.copyfile(scores_path(other, results_of(other)), scores_path(out, results_of(out)))


def shorten(out: Path, other: Path) -> None:
    path = scores_path(out, results_of(out))
    with safe_open(str(path), "numpy") as handle:
        metadata = handle.metadata()
    save_file({k: v[:-3] for k, v in load_file(str(path)).items()}, str(path), metadata=metadata)


def without_energy(out: Path, other: Path) -> None:
    """The file results.json names, id and all, without energy's scores."""
    path = scores_path(out, results_of(out))
    with safe_open(str(path), "numpy") as handle:
        metadata = handle.metadata()
    tensors = {k: v for k, v in load_file(str(path)).items() if not k.startswith("energy/")}
    save_file(tensors, str(path), metadata=metadata)


@pytest.mark.parametrize("lose", [delete, swap, shorten, without_energy])
def test_a_partial_rerun_drops_the_scorers_whose_scores_are_lost(tmp_path, features, lose):
    out, other = tmp_path / "out", tmp_path / "other"
    for folder in (out, other):
        assert analyze(features, "--plugins", SCORERS, "--out", folder).exit_code == 0
    lose(out, other)
    lost = {"energy"} if lose is without_energy else {"energy", "vim"}
    result = analyze(features, "--plugins", "msp", "--out", out)
    assert result.exit_code == 0, result.output
    results, _ = checked_pair(out)
    assert listed(results) == {"msp"} | ({"vim"} - lost)
    for name in lost:  # nothing of them stands: no parameters, timing or error either
        assert all(name not in results[group] for group in ("params", "timings", "errors"))
    assert all(name in result.stderr for name in lost)  # said, and how to get them back
    again = analyze(features, "--plugins", ",".join(sorted(lost)), "--out", out)
    assert again.exit_code == 0, again.output
    assert listed(checked_pair(out)[0]) == {"msp", "energy", "vim"}


def test_a_lost_scorer_that_is_run_again_is_recomputed_and_a_failing_one_is_not_kept(
    tmp_path, features
):
    out = tmp_path / "out"
    assert analyze(features, "--plugins", SCORERS, "--out", out).exit_code == 0
    reference = results_of(out)["ood"]
    delete(out, out)
    result = analyze(features, "--plugins", "msp,energy,vim", "--set", "vim.dim=8", "--out", out)
    assert result.exit_code == 1  # vim fails (dim too large) and has no previous result left
    assert "previous result is kept" not in result.stderr
    results, _ = checked_pair(out)
    assert listed(results) == {"msp", "energy"} and "vim" in results["errors"]
    for ood, per in results["ood"].items():
        for scorer in per:
            assert per[scorer]["auroc"] == reference[ood][scorer]["auroc"]


def test_scores_of_other_features_drop_their_scorers_too(tmp_path, features):
    out = tmp_path / "out"
    assert analyze(features, "--plugins", SCORERS, "--out", out).exit_code == 0
    bigger = tmp_path / "bigger.safetensors"
    save_features(bigger, noisy_dump(num_classes=5, dim=8, seed=2))
    result = analyze(bigger, "--plugins", "msp", "--out", out)
    assert result.exit_code == 0, result.output
    assert listed(checked_pair(out)[0]) == {"msp"}
    assert "energy" in result.stderr and "vim" in result.stderr


# -- the report: "best" only over scored scorers, and the table's -------------------------------


def make_run(root: Path, scorers: str) -> Path:
    """A run folder (no training) whose one epoch is analyzed by ``scorers``."""
    root.mkdir(parents=True)
    dump = noisy_dump(num_classes=4, dim=8, seed=1)
    manifest = {
        "format": "ncood-run",
        "format_version": 1,
        "status": "running",
        "config": {"preset": "synthetic", "epochs": 1, "ood": ["near", "far"]},
        "dataset": {
            "name": "synthetic",
            "num_classes": 4,
            "train_size": len(dump.train.labels),
            "test_size": len(dump.test.labels),
            "ood": {name: len(split.labels) for name, split in dump.ood.items()},
        },
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    save_features(root / "features" / "epoch-0001.safetensors", dump)
    result = analyze(root, "--plugins", scorers)
    assert result.exit_code == 0, result.output
    return root / "analysis" / "epoch-0001"


def context(runs: list[Path], tmp_path: Path) -> ReportContext:
    figures = tmp_path / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    return ReportContext(
        [load_analyzed_run(r) for r in runs],
        "en",
        figures,
        tmp_path,
        load_strings("en", [core_templates()]),
    )


def bold_and_max(ctx: ReportContext, ood: str) -> tuple[str, float, float]:
    """The method the AUROC column bolds, its AUROC, and the column's highest AUROC."""
    table = report_ood.metrics_table(ctx, ood)
    column = {s: row["cells"][0] for s, row in zip(table["scorers"], table["rows"], strict=True)}
    bold = [s for s, cell in column.items() if cell["best"]]
    assert len(bold) == 1 and table["best_auroc"][0] == bold[0]
    values = [cell["value"] for cell in column.values() if cell["value"] is not None]
    return bold[0], column[bold[0]]["value"], max(values)


def lose_the_best(folder: Path, keep_record: bool) -> str:
    """What the old partial rerun left: results.json still lists the best scorer of "near",
    its scores gone, and the comparisons recomputed over the others (naming another best)."""
    from ncood.ood.statistics import significance

    results = results_of(folder)
    near = results["ood"]["near"]
    best = max(sorted(near), key=lambda s: near[s]["auroc"])
    path = scores_path(folder, results)
    scores = load_scores_beside(folder, results)
    rest = {s: v for s, v in scores.items() if s != best}
    results["significance"] = significance(rest, list(rest), list(results["ood"]))
    assert results["significance"]["ood"]["near"]["best"] != best
    if keep_record:
        with safe_open(str(path), "numpy") as handle:
            metadata = handle.metadata()
        tensors = {k: v for k, v in load_file(str(path)).items() if not k.startswith(f"{best}/")}
        save_file(tensors, str(path), metadata=metadata)
    else:  # a results.json from before scores files: nothing to check the scorers against
        path.unlink()
        del results["scores_file"]
    (folder / "results.json").write_text(json.dumps(results))
    return best


def test_the_report_refuses_results_listing_a_scorer_without_scores(tmp_path):
    folder = make_run(tmp_path / "run", "msp,energy,maxlogit,vim,mahalanobis")
    best = lose_the_best(folder, keep_record=True)
    with pytest.raises(NcoodError, match=best):
        load_analyzed_run(tmp_path / "run")
    result = runner.invoke(app, ["report", str(tmp_path / "run"), "--out", tmp_path / "r"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_the_reports_best_is_the_tables_even_over_a_comparison_of_fewer_scorers(tmp_path):
    folder = make_run(tmp_path / "run", "msp,energy,maxlogit,vim,mahalanobis")
    best = lose_the_best(folder, keep_record=False)
    ctx = context([tmp_path / "run"], tmp_path / "report")
    bold, value, highest = bold_and_max(ctx, "near")
    assert bold == best and value == highest
    # the stored comparison (over the others) is not used: no method is claimed ahead of or
    # tied with the best, nothing is marked as tied in the table
    assert report_ood.verdict(ctx.runs[0], "near") is None
    assert report_ood.tied_with_best(ctx.runs[0], "near") is None
    assert not report_ood.metrics_table(ctx, "near")["marked"]


def test_after_a_partial_rerun_the_reports_best_is_scored_and_the_tables_max(tmp_path):
    folder = make_run(tmp_path / "run", "msp,energy,maxlogit,vim,mahalanobis")
    delete(folder, folder)
    assert analyze(tmp_path / "run", "--plugins", "msp,energy,vim").exit_code == 0
    results, scores = checked_pair(folder)
    ctx = context([tmp_path / "run"], tmp_path / "report")
    for ood in results["ood"]:
        bold, value, highest = bold_and_max(ctx, ood)
        assert bold in scores and abs(value - highest) <= 1e-12
        assert bold == results["significance"]["ood"][ood]["best"]


def test_a_folder_written_before_generations_is_read_and_rewritten(tmp_path, features):
    out = tmp_path / "out"
    assert analyze(features, "--plugins", SCORERS, "--out", out).exit_code == 0
    as_legacy(out)
    legacy = load_scores_beside(out, results_of(out))
    assert set(legacy) == {"msp", "energy", "vim"}
    assert analyze(features, "--plugins", "msp", "--out", out).exit_code == 0
    results, scores = checked_pair(out)
    assert listed(results) == {"msp", "energy", "vim"} and not (out / LEGACY_NAME).exists()
    np.testing.assert_array_equal(scores["vim"]["test"], legacy["vim"]["test"])
    assert leftovers(out) == []
