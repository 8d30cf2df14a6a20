"""The report's OOD section: AUROC per method and run (the TP's Table 1), the ROC curves of all
methods in one figure, and each method's ID-vs-OOD score distributions (the TP's Energy figure).

Figures come from the per-sample scores ``ncood analyze`` saved (the scores file) at the last
run's last epoch; matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from markupsafe import Markup

import ncood
from ncood.ood.conventions import roc_points
from ncood.ood.spread import is_degenerate
from ncood.report.context import FAMILY_ORDER, AnalyzedRun, ReportContext, ReportSection, plain
from ncood.report.figures import FULL_WIDTH, line_style, new_figure
from ncood.report.latex import escape, num
from ncood.report.seeds import SeedGroup
from ncood.report.uncertainty import (
    bootstrap_params,
    interval,
    metric_interval,
    seeds_tied,
    significance_params,
    tied_with_best,
    verdict,
)

HISTOGRAM_COLUMNS = 4
HISTOGRAM_BINS = 40
SHOWN_QUANTILES = (0.005, 0.995)  # histogram range; the rare scores beyond pile in the end bins
TP_ORDER = ("msp", "maxlogit", "energy", "mahalanobis", "l2", "vim", "neco")


def scored(run: AnalyzedRun, sets: list[str]) -> tuple[list[str], list[str]]:
    """The scorers with per-sample scores for ID test, and the OOD sets they were scored on."""
    scores = run.final_scores
    scorers = [s for s in run.final["ood"].get(sets[0], {}) if "test" in scores.get(s, {})]
    present = [o for o in sets if all(f"ood/{o}" in scores[s] for s in scorers)]
    return scorers, present


def scorer_style(index: int) -> dict:
    """Ten colours, then the next line style: up to 40 methods stay distinguishable."""
    return {"color": f"C{index % 10}", "ls": line_style(index // 10)}


def draw_roc(ctx: ReportContext, run: AnalyzedRun, scorers, sets):
    """ROC curves of every method, one panel per OOD set, one shared legend beside them."""
    panels = sets[:3]
    fig, axes = new_figure(len(panels) + 1, (FULL_WIDTH[0], 2.9))
    axes[0].get_gridspec().set_width_ratios([1.0] * len(panels) + [0.8])
    for axis, ood in zip(axes, panels, strict=False):
        for index, scorer in enumerate(scorers):
            per_split = run.final_scores[scorer]
            fpr, tpr = roc_points(per_split["test"], per_split[f"ood/{ood}"])
            axis.plot(
                fpr, tpr, lw=1.0, label=plain(ctx.scorer_title(scorer)), **scorer_style(index)
            )
        axis.plot([0, 1], [0, 1], color="grey", lw=0.6, ls=":")
        axis.set(xlim=(0, 1), ylim=(0, 1.01), xlabel=ctx.text("fig_roc_fpr"))
        axis.set_title(ctx.text("fig_roc_panel", ood=ctx.dataset_plain(ood)))
        axis.set_aspect("equal")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel(ctx.text("fig_roc_tpr"))
    legend_axis = axes[-1]
    legend_axis.axis("off")
    handles, labels = axes[0].get_legend_handles_labels()
    legend_axis.legend(
        handles,
        labels,
        loc="center left",
        frameon=False,
        ncol=2 if len(labels) > 10 else 1,
        fontsize=6.5,
        handlelength=2.2,
    )
    return ctx.save_figure(fig, f"roc-{ctx.run_slug(run)}")


def histogram_range(values: list[np.ndarray]) -> tuple[float, float]:
    pooled = np.concatenate(values)
    low, high = np.quantile(pooled, SHOWN_QUANTILES)
    if not high > low:
        low, high = float(pooled.min()) - 0.5, float(pooled.max()) + 0.5
    return float(low), float(high)


def draw_histograms(ctx: ReportContext, run: AnalyzedRun, scorers, sets):
    """Per method, the densities of its scores on ID test and on each OOD set."""
    rows = math.ceil(len(scorers) / HISTOGRAM_COLUMNS)
    fig, axes = new_figure(HISTOGRAM_COLUMNS, (FULL_WIDTH[0], 0.35 + 1.45 * rows), nrows=rows)
    id_label = ctx.text("fig_hist_id", dataset=ctx.dataset_plain(run.manifest["dataset"]["name"]))
    primary = sets[0]
    for axis, scorer in zip(axes, scorers, strict=False):
        per_split = run.final_scores[scorer]
        groups = [("test", id_label)] + [(f"ood/{o}", ctx.dataset_plain(o)) for o in sets]
        low, high = histogram_range([per_split[key] for key, _ in groups])
        bins = np.linspace(low, high, HISTOGRAM_BINS + 1)
        for index, (key, label) in enumerate(groups):
            values = np.clip(per_split[key], low, high)
            if index == 0:
                axis.hist(values, bins=bins, density=True, color="C0", alpha=0.45, label=label)
            else:
                axis.hist(
                    values,
                    bins=bins,
                    density=True,
                    histtype="step",
                    lw=1.1,
                    color=f"C{index % 9 + 1}",
                    label=label,
                )
        auroc = run.final["ood"][primary][scorer]["auroc"]
        axis.set_title(
            ctx.text("fig_hist_panel", method=ctx.scorer_title(scorer), auroc=auroc),
            fontsize=7.5,
        )
        axis.tick_params(labelsize=6)
        axis.set_yticks([])
        axis.xaxis.get_major_locator().set_params(nbins=4)
    handles, labels = axes[0].get_legend_handles_labels()
    spare = axes[len(scorers) :]
    for axis in spare:
        axis.axis("off")
    if spare:  # the legend takes the first empty panel of the grid
        spare[0].legend(handles, labels, loc="center", frameon=False, fontsize=7)
    else:  # a full grid: one legend row above it
        fig.legend(handles, labels, loc="upper center", ncol=len(labels), frameon=False)
        fig.suptitle(" ", fontsize=10)  # reserves the row the legend sits in
    fig.supxlabel(ctx.text("fig_hist_xlabel"), fontsize=7)
    return ctx.save_figure(fig, f"ood-scores-{ctx.run_slug(run)}")


def ordered(scorers: list[str]) -> list[str]:
    """The TP's methods first, in the TP's order, then the others as the results list them."""
    first = [s for s in TP_ORDER if s in scorers]
    return first + [s for s in scorers if s not in first]


def by_family(ctx: ReportContext, scorers: list[str]) -> list[tuple[str, list[str]]]:
    """The scorers grouped by family, the families in ``FAMILY_ORDER`` (logit, feature, shaping,
    model, other), each family's scorers in the order given; families without one left out."""
    family = {s: ctx.scorer_family(s) for s in scorers}
    groups = [(f, [s for s in scorers if family[s] == f]) for f in FAMILY_ORDER]
    return [(f, members) for f, members in groups if members]


def family_blocks(ctx: ReportContext, rows: dict[str, dict]) -> list[dict]:
    """A table's rows (scorer → row) under their family headings, in ``by_family`` order."""
    return [
        {"title": ctx.t(f"ood_family_{f}"), "rows": [rows[s] for s in members]}
        for f, members in by_family(ctx, list(rows))
    ]


def best_of(values: dict[str, float | None], lower_is_better: bool = False) -> str | None:
    """The best value's key; a tie goes to the name that sorts first, the DeLong verdict's rule
    (`ncood.ood.multiple_testing`), so the order results.json lists the scorers in does not
    count."""
    present = {k: v for k, v in values.items() if v is not None}
    if not present:
        return None
    return (min if lower_is_better else max)(sorted(present), key=present.get)


def degenerate(run: AnalyzedRun, ood: str) -> set[str]:
    """The scorers that gave ID test and ``ood`` one score for every sample (ncood.ood.spread):
    their metrics hold by construction, so they are shown, marked, and never the best."""
    return {s for s, m in run.final.get("ood", {}).get(ood, {}).items() if is_degenerate(m)}


def ranked(values: dict[str, float | None], excluded: set[str]) -> dict[str, float | None]:
    return {s: v for s, v in values.items() if s not in excluded}


def best_auroc(run: AnalyzedRun, ood: str, values: dict[str, float | None]) -> str | None:
    """The stored verdict's best where there is one (the † and the sentences are relative to
    it; it breaks ties on the exact midrank AUROC), else the highest AUROC shown; never a
    degenerate scorer."""
    values = ranked(values, degenerate(run, ood))
    found = verdict(run, ood)
    if found and values.get(found.get("best")) is not None:
        return found["best"]
    return best_of(values)


def ties(run: AnalyzedRun, ood: str, best: str | None) -> list[str] | None:
    """``tied_with_best``, when the stored verdict's best is the best shown (not when a
    degenerate scorer was the verdict's best and another was shown instead)."""
    found = verdict(run, ood)
    if not found or found.get("best") != best:
        return None
    return tied_with_best(run, ood)


def metrics_table(ctx: ReportContext, ood: str) -> dict:
    """AUROC of every run and, for the last run, AUPR-In, AUPR-Out and FPR@95, best in bold,
    each value with its bootstrap interval (a seed group: mean ± std over seeds), and the
    AUROCs statistically indistinguishable from the column's best marked."""
    last = ctx.runs[-1]
    scorers: list[str] = []
    for run in ctx.runs:
        scorers += [s for s in run.final["ood"].get(ood, {}) if s not in scorers]
    scorers = [s for _, members in by_family(ctx, ordered(scorers)) for s in members]
    columns = []  # (run, metric, values, lower is better, tied with the best, degenerate)
    bests = []
    for run in ctx.runs:
        per = run.final["ood"].get(ood, {})
        values = {s: per.get(s, {}).get("auroc") for s in scorers}
        bests.append(best_auroc(run, ood, values))
        tied = ties(run, ood, bests[-1]) or []
        columns.append((run, "auroc", values, False, tied, degenerate(run, ood)))
    per_last = last.final["ood"].get(ood, {})
    for key in ("aupr_in", "aupr_out", "fpr95"):
        values = {s: per_last.get(s, {}).get(key) for s in scorers}
        excluded = degenerate(last, ood)
        bests.append(best_of(ranked(values, excluded), key == "fpr95"))
        columns.append((last, key, values, key == "fpr95", [], excluded))
    by_scorer = {
        s: {
            "method": ctx.scorer_title(s),
            "cells": [
                {
                    "value": values[s],
                    "best": s == best,
                    "tied": s != best and s in tied,
                    "degenerate": s in excluded,
                    "ci": interval(ctx, metric_interval(run, ood, s, metric)),
                }
                for (run, metric, values, _, tied, excluded), best in zip(
                    columns, bests, strict=True
                )
            ],
        }
        for s in scorers
    }
    rows = list(by_scorer.values())
    return {
        "ood": ctx.dataset_title(ood),
        "rows": rows,
        "families": family_blocks(ctx, by_scorer),
        "best_auroc": bests[: len(ctx.runs)],
        "scorers": scorers,
        "marked": any(cell["tied"] for row in rows for cell in row["cells"]),
        "degenerate": any(cell["degenerate"] for row in rows for cell in row["cells"]),
        "intervals": any(cell["ci"] for row in rows for cell in row["cells"]),
    }


def best_sentence(ctx: ReportContext, run: AnalyzedRun, ood: str, best: str) -> Markup:
    """Which method is best, and whether the data can tell it from the others (DeLong)."""
    values = {
        "label": ctx.label(run),
        "ood": ctx.dataset_title(ood),
        "method": ctx.scorer_title(best),
        "auroc": num(run.final["ood"][ood][best]["auroc"]),
    }
    if isinstance(run, SeedGroup):
        hits, counted = seeds_tied(run, ood, best)
        if counted:
            return ctx.t("ood_best_seeds", count=len(run.members), hits=hits, **values)
        return ctx.t("ood_best_seeds_plain", count=len(run.members), **values)
    tied = ties(run, ood, best)
    if tied is None:
        return ctx.t("ood_best", **values)
    others = [ctx.scorer_title(s) for s in ordered(tied) if s != best]
    if not others:
        return ctx.t("ood_best_alone", **values)
    key = "ood_best_tied_one" if len(others) == 1 else "ood_best_tied_many"
    return ctx.t(key, others=ctx.enumeration(others), count=len(others) + 1, **values)


def family_sentence(ctx: ReportContext, run: AnalyzedRun, ood: str, scorers: list[str]):
    """Which family of methods does best on average against ``ood`` (its mean AUROC over its
    methods with a result, how many, and its best method); None unless two families are there.
    A tie goes to the family ``FAMILY_ORDER`` lists first."""
    per = run.final["ood"].get(ood, {})
    values = {}
    for s in ranked({s: None for s in scorers}, degenerate(run, ood)):
        auroc = per.get(s, {}).get("auroc")
        if isinstance(auroc, numbers.Real) and math.isfinite(float(auroc)):
            values[s] = float(auroc)
    groups = by_family(ctx, list(values))
    if len(groups) < 2:
        return None
    means = [(sum(values[s] for s in members) / len(members), f, members) for f, members in groups]
    mean, family, members = max(means, key=lambda m: m[0])  # max keeps the first of a tie
    method = best_auroc(run, ood, {s: values[s] for s in members})
    details = {
        "label": ctx.label(run),
        "ood": ctx.dataset_title(ood),
        "family": ctx.t(f"ood_family_{family}_text"),
        "mean": num(mean),
        "count": len(members),
        "method": ctx.scorer_title(method),
        "auroc": num(values[method]),
    }
    return ctx.t("ood_best_family" if len(members) > 1 else "ood_best_family_one", **details)


def significance_note(ctx: ReportContext) -> Markup | None:
    """How the intervals and the comparisons were made, once, from the stored parameters."""
    singles = [run for run in ctx.runs if not isinstance(run, SeedGroup)]
    tested = any(significance_params(run) for run in singles)
    resampled = [p for run in singles if (p := bootstrap_params(run))]
    parts = []
    if tested:
        parts.append(ctx.t("ood_significance_note"))
    if resampled:
        parts.append(
            ctx.t(
                "ood_interval_note",
                resamples=int(resampled[-1]["resamples"]),
                level=round(100 * float(resampled[-1]["level"])),
            )
        )
    if any(isinstance(run, SeedGroup) for run in ctx.runs):
        parts.append(ctx.t("ood_seed_note"))
    return Markup(" ").join(parts) if parts else None


def group_tables(ctx: ReportContext) -> list[dict]:
    """For each run's OOD groups: AUROC per set, and the group's mean AUROC and FPR@95."""
    return [table for run in ctx.runs for table in run_group_tables(ctx, run)]


def run_group_tables(ctx: ReportContext, run: AnalyzedRun) -> list[dict]:
    groups = run.final.get("ood_groups", {})
    single = not isinstance(run, SeedGroup)  # a seed group's spread is its std, not an interval

    def ci(values, metric):
        return interval(ctx, values.get(f"{metric}_ci")) if single else None

    tables = []
    for name, group in groups.items():
        sets = [o for o in group.get("sets", []) if o in run.final.get("ood", {})]
        summary = group.get("scorers", {})
        scorers = ordered([s for s in summary if all(s in run.final["ood"][o] for o in sets)])
        scorers = [s for _, members in by_family(ctx, scorers) for s in members]
        if not sets or not scorers:
            continue
        columns = [({s: run.final["ood"][o][s] for s in scorers}, "auroc", False) for o in sets] + [
            ({s: summary[s] for s in scorers}, "auroc", False),
            ({s: summary[s] for s in scorers}, "fpr95", True),
        ]
        excluded = set().union(*(degenerate(run, o) for o in sets))
        bests = [
            best_of(ranked({s: v[s].get(metric) for s in scorers}, excluded), lower)
            for v, metric, lower in columns
        ]
        by_scorer = {
            s: {
                "method": ctx.scorer_title(s),
                "cells": [
                    {
                        "value": v[s].get(metric),
                        "best": s == best,
                        "tied": False,
                        "degenerate": s in excluded,
                        "ci": ci(v[s], metric),
                    }
                    for (v, metric, _), best in zip(columns, bests, strict=True)
                ],
            }
            for s in scorers
        }
        title_key = f"ood_group_{name}"
        tables.append(
            {
                "group": ctx.t(title_key) if ctx.has(title_key) else escape(name),
                "sets": [ctx.dataset_short(o) for o in sets],
                "rows": list(by_scorer.values()),
                "families": family_blocks(ctx, by_scorer),
                "label": ctx.label(run),
                "degenerate": bool(excluded & set(scorers)),
            }
        )
    return tables


def build(ctx: ReportContext) -> dict | None:
    sets = ctx.ood_sets()
    if not sets:
        return None
    tables, best_sentences = [], []
    for ood in sets:
        table = metrics_table(ctx, ood)
        tables.append(table)
        for run, best in zip(ctx.runs, table["best_auroc"], strict=True):
            if best is not None:
                best_sentences.append(best_sentence(ctx, run, ood, best))
                family = family_sentence(ctx, run, ood, table["scorers"])
                if family is not None:
                    best_sentences.append(family)

    last_run, primary = ctx.runs[-1], sets[0]
    roc = histograms = None
    if last_run.final_scores and primary in last_run.final.get("ood", {}):
        scorers, present = scored(last_run, sets)
        if scorers and primary in present:
            scorers = ordered(scorers)
            roc = draw_roc(ctx, last_run, scorers, present)
            histograms = draw_histograms(ctx, last_run, scorers, present)
    return {
        "dataset": ctx.id_title(),
        "labels": [ctx.label(run) for run in ctx.runs],
        "last_label": ctx.label(last_run),
        "tables": tables,
        "group_tables": group_tables(ctx),
        "best": best_sentences,
        "note": significance_note(ctx),
        "roc_seed": last_run.seeds[0] if isinstance(last_run, SeedGroup) else None,
        "roc": roc,
        "histograms": histograms,
        "roc_ood": ctx.dataset_title(primary),
        "epoch": last_run.last_epoch,
    }


@ncood.hookimpl
def register_report_sections(register):
    register(ReportSection("ood", 30, "sections/ood.tex.j2", build))
