"""``ncood table``: each format printed as the library renders it, on a run analyzed as
``ncood analyze`` does, and one-line errors for what a user can get wrong."""

from __future__ import annotations

import csv
import io

import pytest
from cli_helpers import one_line_error, runner
from nc_builders import analyzed_run

from ncood.cli import app
from ncood.host.loading import host
from ncood.report.table import build_table, load_source, render


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return analyzed_run(tmp_path_factory.mktemp("table") / "run", {1: 1.5}, with_layers=False)


@pytest.mark.parametrize("fmt", ["markdown", "csv", "latex"])
def test_each_format_prints_the_rendered_table(run, fmt):
    result = runner.invoke(app, ["table", str(run.root), "--format", fmt])
    assert result.exit_code == 0, result.output
    titles = {name: host().scorers().get(name).display for name in ("msp", "energy")}
    expected = render(build_table([load_source(run.root)], ["fpr95", "auroc"], titles), fmt)
    assert result.stdout == expected


def test_metrics_comma_separated_or_repeated_and_no_intervals(run):
    one = runner.invoke(
        app, ["table", str(run.root), "--format", "csv", "--metric", "auroc,aupr_in"]
    )
    two = runner.invoke(
        app,
        ["table", str(run.root), "--format", "csv", "--metric", "auroc", "--metric", "aupr_in"],
    )
    assert one.exit_code == 0 and one.stdout == two.stdout
    header = next(csv.reader(io.StringIO(one.stdout)))
    assert "near AUPR-In" in header and not any("FPR" in h for h in header)
    bare = runner.invoke(app, ["table", str(run.root), "--no-intervals"])
    assert bare.exit_code == 0 and "[" not in bare.stdout


def test_two_runs_side_by_side_in_row_blocks(run):
    result = runner.invoke(app, ["table", str(run.root), str(run.root), "--format", "csv"])
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {r["run"] for r in rows} == {"run (1)", "run (2)"}


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--format", "html"], "--format expects one of markdown, csv, latex"),
        (["--metric", "accuracy"], "--metric expects"),
        (["--epoch", "9"], "no analysis of epoch 9"),
    ],
)
def test_user_errors_are_one_line(run, args, fragment):
    one_line_error(runner.invoke(app, ["table", str(run.root), *args]), fragment)


def test_a_folder_that_is_no_run_is_one_line(tmp_path):
    one_line_error(runner.invoke(app, ["table", str(tmp_path)]), "not an ncood run")


def test_a_folder_of_seed_runs_stands_for_them_and_mean_aggregates(tmp_path):
    for seed, spread in ((0, 1.5), (1, 1.0)):
        analyzed_run(tmp_path / "seeds" / f"seed-{seed}", {1: spread}, with_layers=False)
    stacked = runner.invoke(app, ["table", str(tmp_path / "seeds"), "--format", "csv"])
    assert stacked.exit_code == 0, stacked.output
    assert {r["run"] for r in csv.DictReader(io.StringIO(stacked.stdout))} == {"seed-0", "seed-1"}
    mean = runner.invoke(app, ["table", str(tmp_path / "seeds"), "--mean", "--format", "csv"])
    rows = list(csv.DictReader(io.StringIO(mean.stdout)))
    assert len(rows) == 2 and "near AUROC std" in rows[0]
