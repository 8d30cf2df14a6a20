"""The report's comparison of runs trained to control Neural Collapse (issue 27): when the runs
differ in their head (learned or a fixed simplex ETF), loss (cross-entropy or LogitNorm),
projector or entropy regularization, NC1–NC4 and the OOD AUROCs are set side by side along
training, and the sentences say which run collapses more, which detects better, and whether
DeLong's paired test (the runs score the same images) can tell the detections apart.

Leaves itself out unless at least two runs with Neural Collapse results differ in one of those
settings (docs/training.md, Controlling collapse).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from markupsafe import Markup

import ncood
from ncood.ood.multiple_testing import ALPHA, holm
from ncood.ood.spread import is_degenerate
from ncood.report.context import AnalyzedRun, ReportContext, ReportSection
from ncood.report.figures import bottom_legend, grid, integer_epochs, legend_handle
from ncood.report.latex import num, percent, sci
from ncood.report.seeds import SeedGroup, plot_points
from ncood.report.uncertainty import interval, metric_interval, paired_auroc_test

# The settings that force or relax collapse, and their values in the TP's recipe.
CONTROLS = {"head": "linear", "loss": "ce", "etf_projector": 0, "entropy_reg": 0.0}
# (results key, i18n name key, log scale): one panel each, one colour a run.
NC_PANELS = (
    ("nc1", "nc_metric_nc1", True),
    ("nc2_maxangle_means", "nc_metric_nc2_maxangle_means", False),
    ("nc3", "nc_metric_nc3", True),
    ("nc4_test", "nc_metric_nc4_test", False),
)
# The final table's NC rows (lower is more collapse for each).
NC_ROWS = ("nc1", "nc2_maxangle_means", "nc2_maxangle_weights", "nc3", "nc4_test")
MAX_SCORERS = 9  # AUROC panels (a 3 × 3 grid) and table rows: the first scorers the runs share
MATCH = 1e-12  # two AUROCs this close are the same value (the best is then the first run)


def controls_of(run: AnalyzedRun) -> dict:
    config = run.manifest.get("config") or {}
    return {key: config.get(key, default) for key, default in CONTROLS.items()}


def is_baseline(run: AnalyzedRun) -> bool:
    return controls_of(run) == CONTROLS


def compared_runs(ctx: ReportContext) -> list[AnalyzedRun]:
    """Trained runs with NC results, when at least two of them differ in a control."""
    runs = [r for r in ctx.runs if not r.imported and r.series("nc1")]
    if len({tuple(sorted(controls_of(r).items())) for r in runs}) < 2:
        return []
    return runs


def describe(ctx: ReportContext, run: AnalyzedRun) -> Markup:
    """What the run's training does to collapse, in words."""
    c = controls_of(run)
    config = run.manifest.get("config") or {}
    parts = [ctx.t("cc_head_etf" if c["head"] == "etf" else "cc_head_linear")]
    if c["loss"] == "logitnorm":
        parts.append(ctx.t("cc_loss_logitnorm", tau=float(config.get("logitnorm_tau", 0.04))))
    else:
        parts.append(ctx.t("cc_loss_ce"))
    if c["etf_projector"]:
        parts.append(ctx.t("cc_projector", hidden=int(c["etf_projector"])))
    if c["entropy_reg"]:
        parts.append(ctx.t("cc_entropy", alpha=float(c["entropy_reg"])))
    return ctx.enumeration(parts)


def shared_scorers(ctx: ReportContext, runs: list[AnalyzedRun], ood: str) -> list[str]:
    """The scorers every run has against ``ood`` at its last epoch, in the report's order;
    not one that gave every sample the same score in some run (ncood.ood.spread: its AUROC
    holds by construction, it can be no one's best)."""
    shared = []
    for scorer in ctx.scorers():
        metrics = [r.final.get("ood", {}).get(ood, {}).get(scorer) for r in runs]
        if all(m is not None and not is_degenerate(m) for m in metrics):
            shared.append(scorer)
    return shared[:MAX_SCORERS]


def final_nc(run: AnalyzedRun, key: str) -> float | None:
    value = run.final.get("nc", {}).get(key)
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def final_auroc(run: AnalyzedRun, ood: str, scorer: str):
    return run.final.get("ood", {}).get(ood, {}).get(scorer, {}).get("auroc")


def draw_nc(ctx: ReportContext, runs: list[AnalyzedRun]):
    fig, axes, rows = grid(len(NC_PANELS))
    for axis, (key, title, log) in zip(axes, NC_PANELS, strict=True):
        for index, run in enumerate(runs):
            plot_points(axis, run.series(key), log=log, color=f"C{index % 10}")
        axis.set(title=ctx.text(title), xlabel=ctx.text("fig_epoch"))
        if log:
            axis.set_yscale("log")
        axis.grid(alpha=0.3, lw=0.4)
    handles = [legend_handle(color=f"C{i % 10}", marker="o", ms=3) for i in range(len(runs))]
    bottom_legend(fig, handles, [ctx.plain_label(r) for r in runs], rows, ncol=len(runs))
    integer_epochs(fig.axes)
    return ctx.save_figure(fig, "collapse-control-nc", tight=False)


def auroc_band(run: AnalyzedRun, ood: str, scorer: str) -> list[tuple[int, float, float]]:
    """(epoch, low, high) of the stored bootstrap interval at each epoch that has one."""
    band = []
    for epoch, results in sorted(run.results.items()):
        ci = results.get("ood", {}).get(ood, {}).get(scorer, {}).get("auroc_ci")
        if isinstance(run, SeedGroup) or not isinstance(ci, list | tuple) or len(ci) != 2:
            continue
        band.append((epoch, float(ci[0]), float(ci[1])))
    return band


def draw_auroc(ctx: ReportContext, runs: list[AnalyzedRun], ood: str, scorers: list[str]):
    """AUROC along training, a panel per scorer measured at two checkpoints or more (not one
    run only at the last, as the network scorers), a colour per run, its 95 % interval shaded
    (a seed group: ±1 std over seeds); None when no scorer was followed along training."""
    scorers = [s for s in scorers if any(len(r.auroc_series(ood, s)) >= 2 for r in runs)]
    if not scorers:
        return None
    fig, axes, rows = grid(len(scorers))
    for axis, scorer in zip(axes, scorers, strict=True):
        for index, run in enumerate(runs):
            colour = f"C{index % 10}"
            plot_points(axis, run.auroc_series(ood, scorer), color=colour)
            band = auroc_band(run, ood, scorer)
            if len(band) >= 2:
                epochs, low, high = zip(*band, strict=True)
                axis.fill_between(epochs, low, high, color=colour, alpha=0.15, lw=0)
        axis.set(title=ctx.scorer_title(scorer), xlabel=ctx.text("fig_epoch"))
        axis.set_ylabel("AUROC")
        axis.grid(alpha=0.3, lw=0.4)
    handles = [legend_handle(color=f"C{i % 10}", marker="o", ms=3) for i in range(len(runs))]
    bottom_legend(fig, handles, [ctx.plain_label(r) for r in runs], rows, ncol=len(runs))
    integer_epochs(fig.axes)
    return ctx.save_figure(fig, f"collapse-control-auroc-{ood}", tight=False)


def final_table(ctx: ReportContext, runs: list[AnalyzedRun], ood: str, scorers: list[str]):
    """NC rows (the lowest, the most collapsed, in bold) then AUROC rows with intervals (the
    highest in bold), a column per run, at each run's last epoch."""
    rows = []
    for key in NC_ROWS:
        values = [final_nc(run, key) for run in runs]
        present = [v for v in values if v is not None]
        low = min(present) if present else None
        rows.append(
            {
                "name": ctx.t(f"nc_metric_{key}"),
                "cells": [
                    {
                        "text": sci(v),
                        "ci": None,
                        "bold": v is not None and v == low and len(present) > 1,
                    }
                    for v in values
                ],
            }
        )
    for scorer in scorers:
        values = [final_auroc(run, ood, scorer) for run in runs]
        high = max(float(v) for v in values)
        rows.append(
            {
                "name": Markup("AUROC ") + ctx.scorer_title(scorer),
                "cells": [
                    {
                        "text": num(v),
                        "ci": interval(ctx, metric_interval(run, ood, scorer, "auroc")),
                        "bold": float(v) >= high - MATCH,
                    }
                    for run, v in zip(runs, values, strict=True)
                ],
            }
        )
    return rows


@dataclass
class Comparison:
    """One scorer's AUROC in a run against the reference run: DeLong, Holm over the table."""

    run: AnalyzedRun
    scorer: str
    delta: float
    p: float | None
    p_adjusted: float | None = None

    @property
    def significant(self) -> bool:
        return self.p_adjusted is not None and self.p_adjusted <= ALPHA


def comparisons(
    reference: AnalyzedRun, runs: list[AnalyzedRun], ood: str, scorers: list[str]
) -> list[Comparison]:
    """Every (other run, scorer) against the reference; the Holm family is the whole table."""
    found = []
    for run in runs:
        if run is reference:
            continue
        for scorer in scorers:
            tested = paired_auroc_test(reference, run, ood, scorer)
            if tested is None:
                delta = float(final_auroc(run, ood, scorer)) - float(
                    final_auroc(reference, ood, scorer)
                )
                found.append(Comparison(run, scorer, delta, None))
            else:
                found.append(Comparison(run, scorer, tested[0], tested[1]))
    tested = [c for c in found if c.p is not None]
    for comparison, adjusted in zip(tested, holm([c.p for c in tested]), strict=True):
        comparison.p_adjusted = float(adjusted)
    return found


def collapse_sentences(ctx: ReportContext, runs: list[AnalyzedRun]) -> list[Markup]:
    """Which run collapses most at the end (NC1), whether it leads along training too, and
    whether the other properties (NC2 of the means, NC3) rank the runs the same way."""
    out: list[Markup] = []
    nc1 = {id(r): final_nc(r, "nc1") for r in runs}
    ranked = sorted((r for r in runs if nc1[id(r)] is not None), key=lambda r: nc1[id(r)])
    if len(ranked) < 2:
        return out
    most = ranked[0]
    others = ctx.enumeration([Markup(f"{ctx.label(r)} ({sci(nc1[id(r)])})") for r in ranked[1:]])
    out.append(
        ctx.t("cc_collapse_most", label=ctx.label(most), value=sci(nc1[id(most)]), others=others)
    )
    series = {id(r): dict(r.series("nc1")) for r in runs}
    common = sorted(set.intersection(*(set(s) for s in series.values())))
    if len(common) >= 2:
        lead = sum(min(runs, key=lambda r: series[id(r)][e]) is most for e in common)
        out.append(ctx.t("cc_collapse_along", label=ctx.label(most), lead=lead, count=len(common)))
    for key in ("nc2_maxangle_means", "nc3"):
        values = {id(r): final_nc(r, key) for r in runs}
        if any(v is None for v in values.values()):
            continue
        lowest = min(runs, key=lambda r: values[id(r)])
        name = ctx.t(f"nc_metric_{key}")
        if lowest is most:
            out.append(ctx.t("cc_collapse_agrees", metric=name, value=sci(values[id(most)])))
        else:
            out.append(
                ctx.t(
                    "cc_collapse_differs",
                    metric=name,
                    label=ctx.label(lowest),
                    value=sci(values[id(lowest)]),
                    mine=sci(values[id(most)]),
                )
            )
    for run in runs:
        weights = final_nc(run, "nc2_maxangle_weights")
        if controls_of(run)["head"] == "etf" and weights is not None:
            out.append(
                ctx.t(
                    "cc_etf_classifier",
                    label=ctx.label(run),
                    value=sci(weights),
                    nc3=sci(final_nc(run, "nc3")),
                )
            )
    return out


def detection_sentences(
    ctx: ReportContext,
    runs: list[AnalyzedRun],
    reference: AnalyzedRun,
    ood: str,
    scorers: list[str],
    found: list[Comparison],
) -> list[Markup]:
    """The best detection among the runs, each other run against the reference with the
    best method (DeLong), and whether the run that collapses most detects best."""
    out: list[Markup] = []
    best_run, best_scorer = max(
        ((r, s) for s in scorers for r in runs),
        key=lambda pair: float(final_auroc(pair[0], ood, pair[1])),
    )
    auroc = final_auroc(best_run, ood, best_scorer)
    ci = interval(ctx, metric_interval(best_run, ood, best_scorer, "auroc"))
    out.append(
        ctx.t(
            "cc_detect_best",
            label=ctx.label(best_run),
            ood=ctx.dataset_short(ood),
            method=ctx.scorer_title(best_scorer),
            auroc=num(auroc),
            ci=ci or Markup(""),
        )
    )
    for comparison in found:
        if comparison.scorer != best_scorer:
            continue
        values = {
            "label": ctx.label(comparison.run),
            "reference": ctx.label(reference),
            "method": ctx.scorer_title(best_scorer),
            "delta": num(comparison.delta),
            "p": sci(comparison.p, 2),
            "p_adjusted": sci(comparison.p_adjusted, 2),
            "alpha": num(ALPHA, 2),
        }
        if comparison.p is None:
            out.append(ctx.t("cc_delong_unpaired", **values))
        elif comparison.significant:
            key = "cc_delong_better" if comparison.delta > 0 else "cc_delong_worse"
            out.append(ctx.t(key, **values))
        else:
            out.append(ctx.t("cc_delong_tied", **values))
    wins = {id(r): 0 for r in runs}
    for scorer in scorers:
        top = max(runs, key=lambda r: float(final_auroc(r, ood, scorer)))
        wins[id(top)] += 1
    nc1 = {id(r): final_nc(r, "nc1") for r in runs}
    if all(v is not None for v in nc1.values()):
        most = min(runs, key=lambda r: nc1[id(r)])
        values = {
            "label": ctx.label(most),
            "wins": wins[id(most)],
            "count": len(scorers),
            "method": ctx.scorer_title(best_scorer),
        }
        if best_run is most:
            out.append(ctx.t("cc_thesis_yes", **values))
        else:
            out.append(ctx.t("cc_thesis_no", best=ctx.label(best_run), **values))
    return out


def delong_rows(ctx: ReportContext, found: list[Comparison], scorers: list[str], others):
    rows = []
    for scorer in scorers:
        cells = []
        for run in others:
            (c,) = [c for c in found if c.run is run and c.scorer == scorer]
            cells.append(
                {
                    "delta": num(c.delta),
                    "p": sci(c.p_adjusted, 2) if c.p_adjusted is not None else Markup("--"),
                    "significant": c.significant,
                }
            )
        rows.append({"name": ctx.scorer_title(scorer), "cells": cells})
    return rows


def build(ctx: ReportContext) -> dict | None:
    runs = compared_runs(ctx)
    if not runs:
        return None
    reference = next((r for r in runs if is_baseline(r)), runs[0])
    per_ood = []
    for ood in ctx.ood_sets(runs):
        scorers = shared_scorers(ctx, runs, ood)
        if not scorers:
            continue
        found = comparisons(reference, runs, ood, scorers)
        others = [r for r in runs if r is not reference]
        per_ood.append(
            {
                "ood": ctx.dataset_title(ood),
                "ood_short": ctx.dataset_short(ood),
                "slug": ood,
                "figure": draw_auroc(ctx, runs, ood, scorers),
                "table": final_table(ctx, runs, ood, scorers),
                "delong": delong_rows(ctx, found, scorers, others),
                "tested": any(c.p is not None for c in found),
                "others": [ctx.label(r) for r in others],
                "sentences": detection_sentences(ctx, runs, reference, ood, scorers, found),
            }
        )
    return {
        "runs": [{"label": ctx.label(r), "controls": describe(ctx, r)} for r in runs],
        "labels": [ctx.label(r) for r in runs],
        "reference": ctx.label(reference),
        "nc_figure": draw_nc(ctx, runs),
        "collapse": collapse_sentences(ctx, runs),
        "per_ood": per_ood,
        "alpha": num(ALPHA, 2),
        "seeds": any(isinstance(r, SeedGroup) for r in runs),
        "accuracy": [percent(r.final.get("nc", {}).get("model_acc_test")) for r in runs],
    }


@ncood.hookimpl
def register_report_sections(register):
    register(ReportSection("collapse-control", 45, "sections/collapse_control.tex.j2", build))
