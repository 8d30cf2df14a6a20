"""The OOD results of analyzed runs as the table papers print (``ncood table``).

Laid out as OpenOOD v1.5's tables and most OOD papers are: a row per method, a column per OOD
set, the sets of each group (``--ood near:… far:…``) followed by the group's mean ("near",
"far": the mean of the per-set metrics, as OpenOOD averages them), and under each the chosen
metrics (FPR@95 and AUROC by default), in percent. Several runs (models, seeds) are stacked
as row blocks with a run column, as papers that compare backbones or training recipes do:
the columns stay one per OOD set, however many runs. ``mean=True`` gives instead one row per
method with the mean ± standard deviation over the runs (seeds), as OpenOOD reports its three
training seeds. The best value of each column within a run is bold; a bootstrap interval
follows its value when results.json has one.

The numbers are read from each run's results.json (the epoch chosen, by default the last
analyzed), checked by the store's schema; nothing is recomputed.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ncood.errors import NcoodError
from ncood.report.latex import escape, printable
from ncood.report.seeds import Spread, aggregate
from ncood.store.results_schema import METRICS, check_results
from ncood.store.run import RunDir, read_json

FORMATS = ("markdown", "csv", "latex")
DEFAULT_METRICS = ("fpr95", "auroc")  # the pair OpenOOD's and most papers' tables show
METRIC_LABELS = {"auroc": "AUROC", "fpr95": "FPR@95", "aupr_in": "AUPR-In", "aupr_out": "AUPR-Out"}
LOWER_IS_BETTER = {"fpr95"}
RESULTS_NAME = "results.json"
DIGITS = 2  # percent with two decimals, as OpenOOD prints them
MISSING = "–"


@dataclass(frozen=True)
class Source:
    """One analyzed run (or analysis folder) and the results.json the table reads."""

    name: str
    epoch: int | None
    results: dict[str, Any]


@dataclass(frozen=True)
class Column:
    """An OOD set, or the mean of a group of sets."""

    name: str
    group_mean: bool = False

    @property
    def label(self) -> str:
        return f"{self.name} (mean)" if self.group_mean else self.name


@dataclass(frozen=True)
class Cell:
    value: float | None = None  # a fraction in [0, 1]
    interval: tuple[float, float] | None = None
    std: float | None = None  # over the runs, for a mean row


@dataclass
class Row:
    run: str
    method: str  # the scorer's name in results.json
    title: str  # how the table names it
    cells: dict[tuple[Column, str], Cell] = field(default_factory=dict)


@dataclass
class Table:
    metrics: list[str]
    columns: list[Column]
    rows: list[Row]
    several_runs: bool

    def best(self, run: str, column: Column, metric: str) -> float | None:
        """The best value shown in ``column`` among ``run``'s rows (rounded as printed)."""
        shown = [
            round(100 * cell.value, DIGITS)
            for row in self.rows
            if row.run == run and (cell := row.cells[column, metric]).value is not None
        ]
        if not shown:
            return None
        return min(shown) if metric in LOWER_IS_BETTER else max(shown)


def load_source(path: Path, epoch: str = "last") -> Source:
    """A run directory's results at ``epoch`` (N or ``last``), or the results.json of a
    features file's analysis (the file itself or its ``--out`` folder)."""
    if path.is_file() or (path / RESULTS_NAME).is_file():
        file = path if path.is_file() else path / RESULTS_NAME
        results = check_results(read_json(file, "analysis results"), file)
        return Source(file.parent.name, results.get("epoch"), results)
    run = RunDir.open(path)
    epochs = run.analyzed_epochs()
    if not epochs:
        raise NcoodError(f"{path} has no analysis yet (run `ncood analyze {path}`)")
    if epoch == "last":
        chosen = epochs[-1]
    else:
        try:
            chosen = int(epoch)
        except ValueError:
            raise NcoodError(f"--epoch expects N or 'last', got {epoch!r}") from None
        if chosen not in epochs:
            listed = ", ".join(map(str, epochs))
            raise NcoodError(f"{path} has no analysis of epoch {chosen} (analyzed: {listed})")
    return Source(
        run.root.name, chosen, check_results(run.results_for(chosen), run.results(chosen))
    )


def check_metrics(metrics: list[str]) -> list[str]:
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise NcoodError(
            f"--metric expects some of {', '.join(METRICS)}, got {', '.join(metrics) or 'none'}"
        )
    return list(dict.fromkeys(metrics))


def mean_source(sources: list[Source]) -> Source:
    """One source whose metrics are the mean ± std over ``sources`` (what every run has: a
    method or set missing from one is left out); bootstrap intervals are dropped (the mean of
    intervals is no interval)."""
    if len(sources) < 2:
        raise NcoodError("--mean needs two runs or more (the seeds to average)")
    results = aggregate([s.results for s in sources])
    for per_set in [*results.get("ood", {}).values()] + [
        g.get("scorers", {}) for g in results.get("ood_groups", {}).values()
    ]:
        for metrics in per_set.values():
            for key in [k for k in metrics if k.endswith("_ci")]:
                del metrics[key]
    return Source(f"mean ± std of {len(sources)} runs", None, results)


def build_table(
    sources: list[Source],
    metrics: list[str],
    titles: Mapping[str, str] | None = None,
    mean: bool = False,
) -> Table:
    """The table of ``sources`` (or of their mean ± std): columns in the order of their
    groups, then ungrouped sets."""
    metrics = check_metrics(metrics)
    titles = titles or {}
    if mean:
        sources = [mean_source(sources)]
    names = unique_names([s.name for s in sources])
    columns: list[Column] = []
    for source in sources:
        grouped: list[str] = []
        for group, content in source.results.get("ood_groups", {}).items():
            members = [m for m in content.get("sets", []) if m in source.results["ood"]]
            columns += [Column(m) for m in members] + [Column(group, group_mean=True)]
            grouped += members
        columns += [Column(s) for s in source.results["ood"] if s not in grouped]
    columns = list(dict.fromkeys(columns))
    rows = []
    for name, source in zip(names, sources, strict=True):
        results = source.results
        methods = list(dict.fromkeys(m for per in results["ood"].values() for m in per))
        for method in methods:
            row = Row(name, method, titles.get(method, method))
            for column in columns:
                if column.group_mean:
                    group = results.get("ood_groups", {}).get(column.name, {})
                    metrics_of = group.get("scorers", {}).get(method)
                else:
                    metrics_of = results["ood"].get(column.name, {}).get(method)
                for metric in metrics:
                    row.cells[column, metric] = cell(metrics_of, metric)
            rows.append(row)
    if not rows:
        raise NcoodError("no OOD results to tabulate (run `ncood analyze` with an OOD set)")
    return Table(metrics, columns, rows, several_runs=len(sources) > 1)


def unique_names(names: list[str]) -> list[str]:
    """Run names as given, numbered where two runs share a folder name."""
    counts = {n: names.count(n) for n in names}
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if counts[n] == 1 else f"{n} ({seen[n]})")
    return out


def cell(metrics: Any, metric: str) -> Cell:
    if not isinstance(metrics, dict) or not isinstance(metrics.get(metric), int | float):
        return Cell()
    bounds = metrics.get(f"{metric}_ci")
    interval = None
    if (
        isinstance(bounds, list | tuple)
        and len(bounds) == 2
        and all(isinstance(b, int | float) for b in bounds)
    ):
        interval = (float(bounds[0]), float(bounds[1]))
    value = metrics[metric]
    return Cell(float(value), interval, value.std if isinstance(value, Spread) else None)


def percent(value: float) -> str:
    return f"{100 * value:.{DIGITS}f}"


def shown(table: Table, row: Row, column: Column, metric: str, intervals: bool, style) -> str:
    """One cell as text: the value (bold where it is the run's best), then its interval."""
    content = row.cells[column, metric]
    if content.value is None:
        return MISSING
    text = percent(content.value)
    if round(100 * content.value, DIGITS) == table.best(row.run, column, metric):
        text = style.bold(text)
    if content.std is not None:
        text += style.spread(percent(content.std))
    if intervals and content.interval is not None:
        text += style.interval(*map(percent, content.interval))
    return text


def header(column: Column, metric: str, arrow: Callable[[str], str]) -> str:
    return f"{column.label} {METRIC_LABELS[metric]}{arrow(metric)}"


class _Markdown:
    @staticmethod
    def bold(text: str) -> str:
        return f"**{text}**"

    @staticmethod
    def interval(low: str, high: str) -> str:
        return f" [{low}, {high}]"

    @staticmethod
    def spread(std: str) -> str:
        return f" ± {std}"


class _Latex:
    @staticmethod
    def bold(text: str) -> str:
        return rf"\textbf{{{text}}}"

    @staticmethod
    def interval(low: str, high: str) -> str:
        return rf" {{\scriptsize[{low}, {high}]}}"

    @staticmethod
    def spread(std: str) -> str:
        return rf" {{\scriptsize$\pm$ {std}}}"


def markdown_text(text: str) -> str:
    """A name as one markdown table cell: one line, its pipes escaped."""
    return printable(text).replace("\\", "\\\\").replace("|", "\\|")


def to_markdown(table: Table, intervals: bool = True) -> str:
    def arrow(metric: str) -> str:
        return " ↓" if metric in LOWER_IS_BETTER else " ↑"

    heads = (["Run"] if table.several_runs else []) + ["Method"]
    heads += [markdown_text(header(c, m, arrow)) for c in table.columns for m in table.metrics]
    lines = ["| " + " | ".join(heads) + " |"]
    lines.append(
        "|"
        + "|".join([" --- "] * (len(heads) - len(table.columns) * len(table.metrics)))
        + "|"
        + "|".join([" ---: "] * (len(table.columns) * len(table.metrics)))
        + "|"
    )
    for row in table.rows:
        cells = ([markdown_text(row.run)] if table.several_runs else []) + [
            markdown_text(row.title)
        ]
        cells += [
            shown(table, row, c, m, intervals, _Markdown)
            for c in table.columns
            for m in table.metrics
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(table: Table, intervals: bool = True) -> str:
    """One row per run and method; each (column, metric) a number in percent, and its
    interval's bounds in two more columns when any row has one (a mean row: its std in one
    more). The method is results.json's
    name (msp, energy …), its title in a column of its own."""
    with_bounds = {
        (c, m): intervals and any(r.cells[c, m].interval for r in table.rows)
        for c in table.columns
        for m in table.metrics
    }
    with_std = {
        (c, m): any(r.cells[c, m].std is not None for r in table.rows)
        for c in table.columns
        for m in table.metrics
    }
    heads = ["run", "method", "title"]
    for c in table.columns:
        for m in table.metrics:
            name = f"{c.label} {METRIC_LABELS[m]}"
            heads += [name] + ([f"{name} low", f"{name} high"] if with_bounds[c, m] else [])
            heads += [f"{name} std"] if with_std[c, m] else []
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(heads)
    for row in table.rows:
        values = [printable(row.run), printable(row.method), printable(row.title)]
        for c in table.columns:
            for m in table.metrics:
                content = row.cells[c, m]
                values.append("" if content.value is None else percent(content.value))
                if with_bounds[c, m]:
                    bounds = content.interval
                    values += ["", ""] if bounds is None else [percent(b) for b in bounds]
                if with_std[c, m]:
                    values.append("" if content.std is None else percent(content.std))
        writer.writerow(values)
    return buffer.getvalue()


def to_latex(table: Table, intervals: bool = True) -> str:
    """A booktabs ``tabular``: one column group per OOD set (its metrics beneath), the runs as
    row blocks between rules. Every name goes through the report's LaTeX escaper."""
    lead = (["Run"] if table.several_runs else []) + ["Method"]
    width = len(table.metrics)
    spec = "l" * len(lead) + "".join(" " + "r" * width for _ in table.columns)
    lines = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule"]
    groups = [rf"\multicolumn{{{width}}}{{c}}{{{escape(c.label)}}}" for c in table.columns]
    lines.append(" & ".join([""] * len(lead) + groups) + r" \\")
    rules = []
    for i in range(len(table.columns)):
        first = len(lead) + 1 + i * width
        rules.append(rf"\cmidrule(lr){{{first}-{first + width - 1}}}")
    lines.append(" ".join(rules))
    arrows = {True: r"$\downarrow$", False: r"$\uparrow$"}
    metric_heads = [
        f"{escape(METRIC_LABELS[m])}{arrows[m in LOWER_IS_BETTER]}"
        for _ in table.columns
        for m in table.metrics
    ]
    lines.append(" & ".join(lead + metric_heads) + r" \\")
    lines.append(r"\midrule")
    previous = None
    for row in table.rows:
        if table.several_runs and previous is not None and row.run != previous:
            lines.append(r"\midrule")
        first = [] if not table.several_runs else [escape(row.run) if row.run != previous else ""]
        previous = row.run
        cells = first + [str(escape(row.title))]
        cells += [
            shown(table, row, c, m, intervals, _Latex) for c in table.columns for m in table.metrics
        ]
        lines.append(" & ".join(str(c) for c in cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


RENDERERS: dict[str, Callable[[Table, bool], str]] = {
    "markdown": to_markdown,
    "csv": to_csv,
    "latex": to_latex,
}


def render(table: Table, fmt: str, intervals: bool = True) -> str:
    if fmt not in RENDERERS:
        raise NcoodError(f"--format expects one of {', '.join(FORMATS)}, got {fmt!r}")
    return RENDERERS[fmt](table, intervals)
