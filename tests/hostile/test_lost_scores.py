"""Scores lost from beside their results: deleted, swapped for another write's, shortened,
missing a scorer, or of other features; a folder written before scores files had generations.

Never half kept: a partial rerun drops the scorers whose scores are lost (and says so), the
report refuses results whose scores file is not theirs, and it names no "best" over scorers it
has no scores for: its "best" is the table's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import runner
from hostile_helpers import SCORERS, as_legacy, checked_pair, leftovers, listed, results_of
from hostile_helpers import analyze_bootstrap_50 as analyze
from nc_builders import noisy_dump
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from ncood.cli import app
from ncood.errors import NcoodError
from ncood.report.build import core_templates
from ncood.report.context import ReportContext, load_analyzed_run, load_strings
from ncood.store.features import save_features
from ncood.store.scores_file import LEGACY_NAME, load_scores_beside, scores_path
from ncood_plugins.sections import ood as report_ood

# -- scores lost: a partial rerun keeps nothing of their scorers -----------------------------------


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


# -- the report reads only the results' own scores -------------------------------------------------


def test_the_report_refuses_scores_that_are_not_the_results_own(demo_run, tmp_path):
    from ncood.errors import NcoodError
    from ncood.report.context import load_analyzed_run

    run = tmp_path / "run"
    shutil.copytree(demo_run.root, run)
    from ncood.store.scores_file import scores_path

    first, last = (sorted((run / "analysis").iterdir())[i] for i in (0, -1))
    shutil.copyfile(  # another epoch's scores file beside this epoch's results
        scores_path(first, results_of(first)), scores_path(last, results_of(last))
    )
    with pytest.raises(NcoodError, match="not the scores file results.json was written with"):
        load_analyzed_run(run).final_scores  # noqa: B018


def test_the_report_refuses_a_scores_file_of_the_wrong_length(demo_run, tmp_path):
    from ncood.errors import NcoodError
    from ncood.report.context import load_analyzed_run

    run = tmp_path / "run"
    shutil.copytree(demo_run.root, run)
    from safetensors import safe_open

    from ncood.store.scores_file import scores_path

    folder = sorted((run / "analysis").iterdir())[-1]
    last = scores_path(folder, results_of(folder))

    with safe_open(str(last), "numpy") as handle:
        metadata = handle.metadata()
    tensors = {k: v[:-3] for k, v in load_file(str(last)).items()}
    save_file(tensors, str(last), metadata=metadata)  # same id, three samples short
    with pytest.raises(NcoodError, match="expected"):
        load_analyzed_run(run).final_scores  # noqa: B018


# -- the report: "best" only over scored scorers, and the table's ----------------------------------


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
