"""``ncood.report.table``: the paper-style OOD table, checked against results written by hand
(known numbers: every printed value is a hand computation) and against a run analyzed as
``ncood analyze`` does; markdown columns, CSV parsed back, LaTeX escaping and structure."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from nc_builders import analyzed_run

from ncood.errors import NcoodError
from ncood.report.table import build_table, load_source, render, to_csv, to_latex, to_markdown


def metrics(auroc, fpr95, ci=None):
    out = {"auroc": auroc, "aupr_in": 0.5, "aupr_out": 0.5, "fpr95": fpr95}
    if ci:
        out["auroc_ci"], out["fpr95_ci"] = ci
    return out


def results(shift=0.0):
    """Two sets in two groups, two scorers (one named with LaTeX and markdown specials)."""
    return {
        "ood": {
            "ssb_hard": {
                "msp": metrics(0.8123 + shift, 0.6543, ([0.80, 0.82], [0.64, 0.67])),
                "a&b|c": metrics(0.7000 + shift, 0.5000),
            },
            "inat": {"msp": metrics(0.9, 0.4), "a&b|c": metrics(0.95, 0.3)},
        },
        "ood_groups": {
            "near": {"sets": ["ssb_hard"], "scorers": {"msp": metrics(0.8123 + shift, 0.6543)}},
            "far": {"sets": ["inat"], "scorers": {"msp": metrics(0.9, 0.4)}},
        },
        "params": {},
        "errors": {},
    }


@pytest.fixture
def two_runs(tmp_path):
    paths = []
    for name, shift in (("seed0", 0.0), ("seed1", 0.01)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "results.json").write_text(json.dumps(results(shift)))
        paths.append(folder)
    return [load_source(p) for p in paths]


GOLDEN_MARKDOWN = "".join(
    line + "\n"
    for line in [
        "| Method | ssb_hard FPR@95 ↓ | ssb_hard AUROC ↑ | near (mean) FPR@95 ↓ "
        "| near (mean) AUROC ↑ | inat FPR@95 ↓ | inat AUROC ↑ | far (mean) FPR@95 ↓ "
        "| far (mean) AUROC ↑ |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        "| MSP | 65.43 [64.00, 67.00] | **81.23** [80.00, 82.00] | **65.43** | **81.23** "
        "| 40.00 | 90.00 | **40.00** | **90.00** |",
        "| A&B\\|C | **50.00** | 70.00 | – | – | **30.00** | **95.00** | – | – |",
    ]
)


def test_markdown_is_the_golden_table(two_runs):
    table = build_table(two_runs[:1], ["fpr95", "auroc"], {"msp": "MSP", "a&b|c": "A&B|C"})
    assert to_markdown(table) == GOLDEN_MARKDOWN


def test_markdown_rows_have_as_many_columns_as_the_header(two_runs):
    text = to_markdown(build_table(two_runs, ["auroc", "fpr95", "aupr_in"]))
    lines = text.strip().splitlines()
    widths = {len(re.split(r"(?<!\\)\|", line)) for line in lines}
    assert len(widths) == 1  # escaped pipes do not split a cell
    assert lines[0].startswith("| Run | Method |")
    assert len(lines) == 2 + 4  # header, rule, two runs × two methods


def test_the_best_value_of_each_column_is_bold_within_each_run(two_runs):
    table = build_table(two_runs, ["fpr95", "auroc"])
    text = to_markdown(table, intervals=False)
    rows = [line for line in text.splitlines() if "seed1" in line]
    msp = next(r for r in rows if "| msp |" in r)
    other = next(r for r in rows if "a&b" in r)
    assert "**82.23**" in msp and "**50.00**" in other  # higher AUROC, lower FPR@95
    assert "**65.43**" not in msp.split("|")[3]  # the ssb_hard FPR@95 cell of msp is not best


def test_csv_parses_back_to_the_results_in_percent(two_runs):
    text = to_csv(build_table(two_runs, ["auroc", "fpr95"]))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["run"], r["method"]) for r in rows] == [
        ("seed0", "msp"),
        ("seed0", "a&b|c"),
        ("seed1", "msp"),
        ("seed1", "a&b|c"),
    ]
    seed1_msp = rows[2]
    assert float(seed1_msp["ssb_hard AUROC"]) == pytest.approx(82.23)
    assert float(seed1_msp["ssb_hard AUROC low"]) == 80.0
    assert float(seed1_msp["ssb_hard AUROC high"]) == 82.0
    assert float(seed1_msp["near (mean) FPR@95"]) == pytest.approx(65.43)
    assert rows[1]["near (mean) AUROC"] == ""  # no group mean for that scorer
    assert rows[1]["ssb_hard AUROC low"] == ""  # no interval for that scorer
    assert "inat AUROC low" not in rows[0]  # no interval in that column at all


def test_latex_escapes_every_name_and_keeps_the_structure(two_runs, tmp_path):
    weird = tmp_path / "run_50%#1"
    weird.mkdir()
    (weird / "results.json").write_text(json.dumps(results()))
    table = build_table([two_runs[0], load_source(weird)], ["fpr95", "auroc"])
    text = to_latex(table)
    assert r"a\&b|c" in text and r"ssb\_hard" in text and r"run\_50\%\#1" in text
    lines = text.splitlines()
    assert lines[0] == r"\begin{tabular}{ll rr rr rr rr}"
    assert lines[-1] == r"\end{tabular}" and lines[-2] == r"\bottomrule"
    body = [line for line in lines if line.endswith(r"\\")]
    assert all(line.count("&") - line.count(r"\&") == 2 + 8 - 1 for line in body[1:])
    assert body[0].count(r"\multicolumn{2}{c}") == 4
    assert lines.count(r"\midrule") == 2  # below the header, between the two runs
    assert r"\textbf{81.23} {\scriptsize[80.00, 82.00]}" in text
    assert text.count("seed0") == 1  # the run is named on its block's first row only


def test_a_run_directory_at_the_last_or_a_chosen_epoch(tmp_path):
    run = analyzed_run(tmp_path / "run", {1: 2.0, 2: 0.8}, with_layers=False)
    last, first = load_source(run.root), load_source(run.root, "1")
    assert (last.epoch, first.epoch) == (2, 1)
    table = build_table([last], ["auroc"])
    expected = json.loads(run.results(2).read_text())["ood"]["near"]["msp"]["auroc"]
    row = next(r for r in table.rows if r.method == "msp")
    column = next(c for c in table.columns if c.name == "near")
    assert row.cells[column, "auroc"].value == expected
    assert f"{100 * expected:.2f}" in to_markdown(table)
    with pytest.raises(NcoodError, match=r"no analysis of epoch 7 \(analyzed: 1, 2\)"):
        load_source(run.root, "7")


def test_user_errors_are_one_line(tmp_path, two_runs):
    with pytest.raises(NcoodError, match="--metric expects"):
        build_table(two_runs, ["accuracy"])
    with pytest.raises(NcoodError, match="--format expects"):
        render(build_table(two_runs, ["auroc"]), "html")
    with pytest.raises(NcoodError, match="not an ncood run"):
        load_source(tmp_path)


def test_the_mean_of_several_runs_is_mean_and_std_per_method(two_runs):
    table = build_table(two_runs, ["auroc"], mean=True)
    assert not table.several_runs and [r.method for r in table.rows] == ["msp", "a&b|c"]
    text = to_markdown(table)
    # msp on ssb_hard: 81.23 and 82.23 → mean 81.73, sample std 0.71; no bootstrap interval
    assert "| msp | **81.73** ± 0.71 | **81.73** ± 0.71 | 90.00 ± 0.00 |" in text
    assert "[" not in text
    rows = list(csv.DictReader(io.StringIO(to_csv(table))))
    assert float(rows[1]["ssb_hard AUROC"]) == pytest.approx(70.5)
    assert float(rows[1]["ssb_hard AUROC std"]) == pytest.approx(0.71)
    assert r"\textbf{81.73} {\scriptsize$\pm$ 0.71}" in to_latex(table)
    with pytest.raises(NcoodError, match="--mean needs two runs"):
        build_table(two_runs[:1], ["auroc"], mean=True)
