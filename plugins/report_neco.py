"""The report's NECO section (the TP's section 6): how the Neural-Collapse-inspired score
separates in- from out-of-distribution data, from each run's results and per-sample scores.

The section reads what ``ncood analyze`` wrote for the scorer named ``neco`` and leaves itself
out when no run has such results.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from markupsafe import Markup
from sklearn.metrics import roc_curve

import ncood
from ncood.conventions import ID_RECALL
from ncood.plugins import host
from ncood.report.context import AnalysedRun, ReportContext, ReportSection
from ncood.report.figures import new_figure
from ncood.report.latex import command, join, num, percent
from ncood_plugins.report_core import enumeration, format_param, scorer_title

SCORER = "neco"
# "Competitive", as the TP reads NECO's 0.842 against the best method's 0.859: within this much
# AUROC of the best method of the same run and OOD set.
COMPETITIVE_GAP = 0.02
PANELS_PER_ROW = 3


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


def ood_sets(run: AnalysedRun) -> list[str]:
    """The OOD sets NECO was scored on, in the order the run's configuration lists them."""
    scored = [o for o, per in run.final.get("ood", {}).items() if SCORER in per]
    order = [*run.manifest["config"].get("ood", []), *scored]
    return [o for o in dict.fromkeys(order) if o in scored]


def standing(run: AnalysedRun, ood: str) -> Standing:
    per_scorer = run.final["ood"][ood]
    aurocs = {name: metrics["auroc"] for name, metrics in per_scorer.items()}
    mine = aurocs[SCORER]
    best = max(aurocs, key=lambda name: (aurocs[name], name == SCORER))
    return Standing(
        ood=ood,
        auroc=mine,
        fpr95=per_scorer[SCORER]["fpr95"],
        rank=1 + sum(value > mine for name, value in aurocs.items() if name != SCORER),
        count=len(aurocs),
        best=best,
        best_auroc=aurocs[best],
    )


def threshold_at_recall(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """The threshold of docs/conventions.md's FPR@95: the first that keeps 95 % of ID."""
    is_id = np.concatenate([np.ones(len(id_scores)), np.zeros(len(ood_scores))])
    _, tpr, thresholds = roc_curve(is_id, np.concatenate([id_scores, ood_scores]))
    return float(thresholds[np.searchsorted(tpr, ID_RECALL, side="left")])


def draw_distributions(ctx: ReportContext, run: AnalysedRun, sets: list[str]):
    """ID test scores against each OOD set's, one panel per set, with the 95 %-ID threshold."""
    scores = run.final_scores.get(SCORER, {})
    sets = [o for o in sets if f"ood/{o}" in scores and "test" in scores]
    if not sets:
        return None
    columns = min(len(sets), PANELS_PER_ROW)
    rows = -(-len(sets) // columns)
    fig, axes = new_figure(columns, (2.5 * columns + 0.5, 2.3 * rows + 0.4), nrows=rows)
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
            threshold_at_recall(id_scores, ood_scores),
            color="k",
            lw=0.9,
            ls="--",
            label=ctx.text("fig_threshold"),
        )
        auroc = run.final["ood"][ood][SCORER]["auroc"]
        axis.set_title(ctx.text("fig_neco_panel", ood=ctx.dataset_plain(ood), auroc=auroc))
        axis.set(xlabel=ctx.text("fig_neco_score"), ylabel=ctx.text("fig_density"))
        axis.grid(alpha=0.3)
    for axis in axes[len(sets) :]:
        axis.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0.12 / rows, 1, 1))
    fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0), ncol=3, frameon=False)
    return ctx.save_figure(fig, f"neco-scores-{ctx.run_slug(run)}", tight=False)


def auroc_progression(run: AnalysedRun, ood: str) -> list[tuple[int, float]]:
    return [
        (epoch, results["ood"][ood][SCORER]["auroc"])
        for epoch, results in sorted(run.results.items())
        if SCORER in results.get("ood", {}).get(ood, {})
    ]


def draw_progression(ctx: ReportContext, runs: list[AnalysedRun]):
    """NECO's AUROC at every analysed checkpoint, a line per run and OOD set."""
    lines = [
        (index, run, ood, auroc_progression(run, ood))
        for index, run in enumerate(runs)
        for ood in ood_sets(run)
    ]
    lines = [line for line in lines if len(line[3]) >= 2]
    if not lines:
        return None
    fig, (axis,) = new_figure(1, (4.6, 2.8))
    styles = ("-", "--", "-.", ":")
    sets = list(dict.fromkeys(ood for _, _, ood, _ in lines))
    for index, run, ood, points in lines:
        epochs, values = zip(*points, strict=True)
        axis.plot(
            epochs,
            values,
            marker="o",
            ms=3,
            color=f"C{index % 10}",
            ls=styles[sets.index(ood) % len(styles)],
            label=f"{ctx.plain_label(run)}, {ctx.dataset_plain(ood)}",
        )
    axis.axhline(0.5, color="grey", lw=0.8, ls=":")
    axis.set(xlabel=ctx.text("fig_epoch"), ylabel=ctx.text("fig_neco_auroc"), ylim=(0, 1.02))
    axis.grid(alpha=0.3)
    axis.legend(fontsize=6, loc="lower left")
    return ctx.save_figure(fig, "neco-auroc-progress")


def standing_sentence(ctx: ReportContext, run: AnalysedRun, s: Standing):
    values = {
        "label": ctx.label(run),
        "ood": ctx.dataset_short(s.ood),
        "auroc": num(s.auroc),
        "rank": s.rank,
        "count": s.count,
        "best": scorer_title(s.best),
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


def trend_sentence(ctx: ReportContext, run: AnalysedRun, ood: str):
    """Does NECO improve as the features collapse (NC1 falls) along training?"""
    points = dict(auroc_progression(run, ood))
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
    scorers = host().scorers()
    return scorers.get(SCORER).description if SCORER in scorers else SCORER


def parameters(runs: list[AnalysedRun]) -> Markup:
    params: dict = {}
    for run in runs:
        params.update(run.final.get("params", {}).get(SCORER, {}) or {})
    return join(
        ", ", (command("texttt", f"{k}={format_param(v)}") for k, v in sorted(params.items()))
    )


def build(ctx: ReportContext) -> dict | None:
    runs = [run for run in ctx.runs if ood_sets(run)]
    if not runs:
        return None
    per_run = []
    for run in runs:
        sets = ood_sets(run)
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
                        "best": scorer_title(s.best),
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
        figures_text = ctx.t(key, refs=enumeration(ctx, refs), recall=percent(ID_RECALL, 0))
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
