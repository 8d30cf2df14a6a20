"""The report's OOD section: every scorer in the table, the two figures drawn, and their legends
clear of the curves, titles and histograms."""

from __future__ import annotations

import shutil

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.transforms import Bbox
from typer.testing import CliRunner

from ncood.cli import app
from ncood.host.loading import host
from ncood.report.context import ReportContext

runner = CliRunner()


@pytest.fixture
def drawn(monkeypatch):
    """Every figure a section saves, kept for inspection after its layout is final."""
    figures = {}
    real = ReportContext.save_figure

    def keep(self, fig, name, *args, **kwargs):
        path = real(self, fig, name, *args, **kwargs)
        figures[name] = fig
        return path

    monkeypatch.setattr(ReportContext, "save_figure", keep)
    return figures


def overlaps(a: Bbox, b: Bbox) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def legend_clear(fig) -> None:
    renderer = FigureCanvasAgg(fig).get_renderer()  # the saved figure's canvas is closed
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    assert legends
    plotted = [ax for ax in fig.axes if ax.axison]
    for legend in legends:
        box = legend.get_window_extent(renderer)
        for axis in plotted:
            assert not overlaps(box, axis.get_tightbbox(renderer)), axis.get_title()


def analyzed_copy(demo_run, tmp_path, plugins: str):
    run = tmp_path / "run"
    shutil.copytree(demo_run.root, run)
    shutil.rmtree(run / "analysis")
    result = runner.invoke(app, ["analyze", str(run), "--plugins", plugins, "--quiet"])
    assert result.exit_code == 0, result.output
    return run


def test_every_scorer_in_the_table_and_both_figures(demo_run, tmp_path, drawn):
    out = tmp_path / "rep"
    result = runner.invoke(app, ["report", str(demo_run.root), "--out", str(out), "--no-pdf"])
    assert result.exit_code == 0, result.output
    tex = (out / "ncood-report-fr.tex").read_text()
    ood_section = tex[tex.index(r"\section{Détection Out-of-Distribution") :]
    ood_section = ood_section[: ood_section.index(r"\section", 10)]
    on_features = [
        s for _, s in host().scorers().items() if not s.needs_network and not s.needs_members
    ]
    for scorer in on_features:
        assert f"\n    {scorer.display} &" in ood_section, scorer.name
    roc = [n for n in drawn if n.startswith("roc-")]
    histograms = [n for n in drawn if n.startswith("ood-scores-")]
    assert len(roc) == 1 and len(histograms) == 1
    assert r"\label{fig:roc}" in ood_section and r"\label{fig:ood-scores}" in ood_section
    # ROC: one panel per OOD set (photos, noise) and the legend's own panel, one curve per scorer.
    roc_fig = drawn[roc[0]]
    panels = [ax for ax in roc_fig.axes if ax.axison]
    assert len(panels) == 2
    assert len(panels[0].get_lines()) == len(on_features) + 1  # + the chance diagonal
    legend_clear(roc_fig)
    # Histograms: one panel per scorer, the legend in the first spare panel.
    hist_fig = drawn[histograms[0]]
    assert len([ax for ax in hist_fig.axes if ax.axison]) == len(on_features)
    legend_clear(hist_fig)


def test_full_histogram_grid_puts_the_legend_above(demo_run, tmp_path, drawn):
    run = analyzed_copy(demo_run, tmp_path, "msp,energy,vim,neco")  # exactly one full row
    out = tmp_path / "rep"
    result = runner.invoke(app, ["report", str(run), "--out", str(out), "--no-pdf"])
    assert result.exit_code == 0, result.output
    (hist_fig,) = [fig for name, fig in drawn.items() if name.startswith("ood-scores-")]
    assert hist_fig.legends  # a figure legend, not one inside a panel
    legend_clear(hist_fig)
