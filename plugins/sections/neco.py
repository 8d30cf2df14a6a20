"""The report's NECO section (the TP's section 6): how the Neural-Collapse-inspired score
separates in- from out-of-distribution data, from each run's results and per-sample scores.

The section reads what ``ncood analyze`` wrote for the scorer named ``neco`` and leaves itself
out when no run has such results.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from markupsafe import Markup

import ncood
from ncood.ood.conventions import ID_RECALL
from ncood.ood.spread import is_degenerate
from ncood.report.context import AnalyzedRun, ReportContext, ReportSection
from ncood.report.figures import grid, line_style, new_figure
from ncood.report.latex import command, format_param, join, num, percent
from ncood.report.seeds import plot_curve

SCORER = "neco"
# "Competitive", as the TP reads NECO's 0.842 against the best method's 0.859: within this much
# AUROC of the best method of the same run and OOD set.
COMPETITIVE_GAP = 0.02


@dataclass
class Standing:
    """NECO against the other scorers of one run and OOD set, at the run's last epoch."""

    ood: str
    auroc: float
    fpr95: float
    rank: int
    count: int
    best: str
    best_auroc: float


def standing(run: AnalyzedRun, ood: str) -> Standing:
    per_scorer = run.final["ood"][ood]
    aurocs = {name: metrics["auroc"] for name, metrics in per_scorer.items()}
    mine = aurocs[SCORER]
    candidates = [n for n in aurocs if not is_degenerate(per_scorer[n])] or list(aurocs)
    best = max(candidates, key=lambda name: (aurocs[name], name == SCORER))
    return Standing(
        ood=ood,
        auroc=mine,
        fpr95=per_scorer[SCORER]["fpr95"],
        rank=1 + sum(value > mine for name, value in aurocs.items() if name != SCORER),
        count=len(aurocs),
        best=best,
        best_auroc=aurocs[best],
    )


def draw_distributions(ctx: ReportContext, run: AnalyzedRun, sets: list[str]):
    """ID test scores against each OOD set's, one panel per set, with the 95 %-ID threshold."""
    scores = run.final_scores.get(SCORER, {})
    sets = [o for o in sets if f"ood/{o}" in scores and "test" in scores]
    if not sets:
        return None
    fig, axes, rows = grid(len(sets), 2.5, 2.3, margins=(0.5, 0.4))
    id_scores = np.asarray(scores["test"], np.float64)
    id_name = ctx.text("fig_id", name=ctx.dataset_plain(run.manifest["dataset"]["name"]))
    for axis, ood in zip(axes, sets, strict=False):
        ood_scores = np.asarray(scores[f"ood/{ood}"], np.float64)
        low, high = min(id_scores.min(), ood_scores.min()), max(id_scores.max(), ood_scores.max())
        bins = np.linspace(low, high if high > low else low + 1e-6, 40)
        axis.hist(id_scores, bins=bins, density=True, alpha=0.55, color="C0", label=id_name)
        axis.hist(
            ood_scores,
            bins=bins,
            density=True,
            alpha=0.55,
            color="C3",
            label=ctx.text("fig_ood"),
        )
        axis.axvline(
            ctx.fpr95_threshold(id_scores, ood_scores),
            color="k",
            lw=0.9,
            ls="--",
            label=ctx.text("fig_threshold"),
        )
        auroc = run.final["ood"][ood][SCORER]["auroc"]
        axis.set_title(ctx.text("fig_neco_panel", ood=ctx.dataset_plain(ood), auroc=auroc))
        axis.set(xlabel=ctx.text("fig_neco_score"), ylabel=ctx.text("fig_density"))
        axis.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0.12 / rows, 1, 1))
    fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0), ncol=3, frameon=False)
    return ctx.save_figure(fig, f"neco-scores-{ctx.run_slug(run)}", tight=False)


def draw_progression(ctx: ReportContext, runs: list[AnalyzedRun]):
    """NECO's AUROC at every analyzed checkpoint, a line per run and OOD set."""
    lines = [
        (index, run, ood, run.auroc_series(ood, SCORER))
        for index, run in enumerate(runs)
        for ood in run.ood_sets(SCORER)
    ]
    lines = [line for line in lines if len(line[3]) >= 2]
    if not lines:
        return None
    fig, (axis,) = new_figure(1, (4.6, 2.8))
    sets = list(dict.fromkeys(ood for _, _, ood, _ in lines))
    for index, run, ood, points in lines:
        epochs, values = zip(*points, strict=True)
        plot_curve(
            axis,
            epochs,
            values,
            marker="o",
            ms=3,
            color=f"C{index % 10}",
            ls=line_style(sets.index(ood)),
            label=f"{ctx.plain_label(run)}, {ctx.dataset_plain(ood)}",
        )
    axis.axhline(0.5, color="grey", lw=0.8, ls=":")
    axis.set(xlabel=ctx.text("fig_epoch"), ylabel=ctx.text("fig_neco_auroc"), ylim=(0, 1.02))
    axis.grid(alpha=0.3)
    axis.legend(fontsize=6, loc="lower left")
    return ctx.save_figure(fig, "neco-auroc-progress")


def standing_sentence(ctx: ReportContext, run: AnalyzedRun, s: Standing):
    values = {
        "label": ctx.label(run),
        "ood": ctx.dataset_short(s.ood),
        "auroc": num(s.auroc),
        "rank": s.rank,
        "count": s.count,
        "best": ctx.scorer_title(s.best),
        "best_auroc": num(s.best_auroc),
        "delta": num(s.best_auroc - s.auroc),
        "gap": num(COMPETITIVE_GAP, 2),
    }
    if s.rank == 1:
        key = "neco_best"
    elif s.best_auroc - s.auroc <= COMPETITIVE_GAP:
        key = "neco_close"
    else:
        key = "neco_behind"
    sentence = ctx.t(key, **values)
    if s.auroc < 0.5:
        sentence += Markup(" ") + ctx.t("neco_below_chance", **values)
    return sentence


def trend_sentence(ctx: ReportContext, run: AnalyzedRun, ood: str):
    """Does NECO improve as the features collapse (NC1 falls) along training?"""
    points = dict(run.auroc_series(ood, SCORER))
    nc1 = {e: r["nc"]["nc1"] for e, r in run.results.items() if "nc1" in r.get("nc", {})}
    epochs = sorted(set(points) & set(nc1))
    if len(epochs) < 2:
        return None
    first, last = epochs[0], epochs[-1]
    values = {
        "label": ctx.label(run),
        "ood": ctx.dataset_short(ood),
        "e1": first,
        "e2": last,
        "a": num(points[first]),
        "b": num(points[last]),
        "n1": num(nc1[first], 3),
        "n2": num(nc1[last], 3),
    }
    if nc1[last] >= nc1[first]:
        return ctx.t("neco_trend_no_collapse", **values)
    key = "neco_trend_up" if points[last] > points[first] else "neco_trend_down"
    return ctx.t(key, **values)


def definition(ctx: ReportContext):
    key = f"scorer_def_{SCORER}"
    if ctx.has(key):
        return ctx.t(key)
    contribution = ctx.scorer(SCORER)
    return contribution.description if contribution else SCORER


def parameters(runs: list[AnalyzedRun]) -> Markup:
    params: dict = {}
    for run in runs:
        params.update(run.params(SCORER))
    return join(
        ", ", (command("texttt", f"{k}={format_param(v)}") for k, v in sorted(params.items()))
    )


def build(ctx: ReportContext) -> dict | None:
    runs = [run for run in ctx.runs if run.ood_sets(SCORER)]
    if not runs:
        return None
    per_run = []
    for run in runs:
        sets = run.ood_sets(SCORER)
        standings = [standing(run, ood) for ood in sets]
        trend = trend_sentence(ctx, run, sets[0])
        per_run.append(
            {
                "label": ctx.label(run),
                "slug": ctx.run_slug(run),
                "epoch": run.last_epoch,
                "figure": draw_distributions(ctx, run, sets),
                "standings": [
                    {
                        "ood": ctx.dataset_short(s.ood),
                        "auroc": s.auroc,
                        "fpr95": s.fpr95,
                        "rank": s.rank,
                        "count": s.count,
                        "best": ctx.scorer_title(s.best),
                        "best_auroc": s.best_auroc,
                        "is_best": s.rank == 1,
                    }
                    for s in standings
                ],
                "sentences": [standing_sentence(ctx, run, s) for s in standings]
                + ([trend] if trend is not None else []),
            }
        )
    progression = draw_progression(ctx, runs)
    refs = [Markup(rf"\ref{{fig:neco-{r['slug']}}}") for r in per_run if r["figure"]]
    figures_text = None
    if refs:
        key = "neco_figures_text_one" if len(refs) == 1 else "neco_figures_text_many"
        figures_text = ctx.t(key, refs=ctx.enumeration(refs), recall=percent(ID_RECALL, 0))
    return {
        "definition": definition(ctx),
        "params": parameters(runs),
        "runs": per_run,
        "progression": progression,
        "figures_text": figures_text,
        "percent95": percent(ID_RECALL, 0),
    }


@ncood.hookimpl
def register_report_sections(register):
    register(ReportSection("neco", 50, "sections/neco.tex.j2", build))
