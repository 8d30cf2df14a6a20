"""The report's OOD section: AUROC per method and run (the TP's Table 1), ROC curves, details."""

from __future__ import annotations

from ncood_plugins.report_core import dataset_name

import ncood
from ncood.conventions import roc_points
from ncood.plugins import host
from ncood.report.context import ReportContext, ReportSection
from ncood.report.figures import HALF_WIDTH, new_figure, save
from ncood.report.latex import num


def scorer_titles() -> dict[str, str]:
    return {name: c.display for name, c in host().scorers().items()}


def ood_sets(ctx: ReportContext) -> list[str]:
    """OOD sets in the order the first run lists them (the primary one first)."""
    seen: list[str] = []
    for run in ctx.runs:
        for name in [*run.manifest["config"].get("ood", []), *run.final.get("ood", {})]:
            if name not in run.final.get("ood", {}):
                continue
            if name not in seen:
                seen.append(name)
    return seen


def draw_roc(ctx: ReportContext, run, ood: str, titles: dict[str, str]):
    scores = run.final_scores
    fig, (axis,) = new_figure(1, HALF_WIDTH)
    for index, (scorer, per_split) in enumerate(sorted(scores.items())):
        if f"ood/{ood}" not in per_split:
            continue
        fpr, tpr = roc_points(per_split["test"], per_split[f"ood/{ood}"])
        auroc = run.final["ood"][ood][scorer]["auroc"]
        axis.plot(
            fpr, tpr, color=f"C{index % 10}", label=f"{titles.get(scorer, scorer)} ({auroc:.3f})"
        )
    axis.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    axis.set(xlabel="FPR (OOD accepted)", ylabel="TPR (ID accepted)", xlim=(0, 1), ylim=(0, 1.01))
    axis.legend(fontsize=6, loc="lower right")
    axis.grid(alpha=0.3)
    return save(fig, ctx.figure(f"roc-{_slug(run.name)}-{_slug(ood)}"))


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text)


def build(ctx: ReportContext) -> dict | None:
    sets = ood_sets(ctx)
    if not sets:
        return None
    titles = scorer_titles()
    labels = [ctx.label(run) for run in ctx.runs]
    tables, best_sentences = [], []
    for ood in sets:
        scorers: list[str] = []
        for run in ctx.runs:
            for scorer in run.final["ood"].get(ood, {}):
                if scorer not in scorers:
                    scorers.append(scorer)
        columns = []
        for run in ctx.runs:
            column = {s: run.final["ood"].get(ood, {}).get(s, {}).get("auroc") for s in scorers}
            present = {s: v for s, v in column.items() if v is not None}
            best = max(present, key=present.get) if present else None
            if best is not None:
                best_sentences.append(
                    ctx.t(
                        "ood_best",
                        label=ctx.label(run),
                        ood=ood,
                        method=titles.get(best, best),
                        auroc=num(present[best]),
                    )
                )
            columns.append((column, best))
        rows = [
            {
                "method": titles.get(s, s),
                "cells": [{"value": col[s], "best": s == best} for col, best in columns],
            }
            for s in scorers
        ]
        tables.append({"ood": ood, "rows": rows})

    last_run, primary = ctx.runs[-1], sets[0]
    roc = draw_roc(ctx, last_run, primary, titles) if last_run.final_scores else None
    full_rows = [
        {"method": titles.get(s, s), **{k: m[k] for k in ("aupr_in", "aupr_out", "fpr95")}}
        for s, m in last_run.final["ood"].get(primary, {}).items()
    ]
    return {
        "dataset": dataset_name(ctx),
        "labels": labels,
        "tables": tables,
        "best": best_sentences,
        "roc": ctx.relative(roc) if roc else None,
        "roc_ood": primary,
        "roc_label": ctx.label(last_run),
        "full": {"rows": full_rows, "ood": primary, "label": ctx.label(last_run)},
    }


@ncood.hookimpl
def register_report_sections(register):
    register(ReportSection("ood", 30, "sections/ood.tex.j2", build))
