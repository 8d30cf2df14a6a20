"""The report's NC5 section (the TP's section 5), under both of NC5's names: the TP's agreement
between the network and the nearest-class-centre classifier (accuracies and agreement on test),
and the NECO paper's orthogonality between ID class means and each OOD set's mean.

Every number comes from ``results.json["nc"]`` of the analyzed checkpoints; every sentence is
chosen from them.
"""

from __future__ import annotations

import ncood
from ncood.report import nc_figures as figures
from ncood.report.context import AnalyzedRun, ReportContext, ReportSection
from ncood.report.latex import num, percent

TP_DATASET = "cifar100"  # the TP's own numbers are quoted only next to runs on its dataset


def agreement_rows(ctx: ReportContext, runs: list[AnalyzedRun]) -> list[dict]:
    rows = []
    for run in runs:
        nc = run.final["nc"]
        for split in ("test", "train"):
            if f"ncc_agreement_{split}" not in nc:
                continue
            rows.append(
                {
                    "label": ctx.label(run) if split == "test" else "",
                    "epoch": run.last_epoch if split == "test" else "",
                    "split": ctx.t(f"nc5_split_{split}"),
                    "model": percent(nc.get(f"model_acc_{split}")),
                    "ncc": percent(nc.get(f"ncc_acc_{split}")),
                    "agreement": percent(nc.get(f"ncc_agreement_{split}")),
                }
            )
    return rows


def agreement_sentences(ctx: ReportContext, run: AnalyzedRun) -> list:
    nc = run.final["nc"]
    out = [
        ctx.t(
            "nc5_agreement_sentence",
            epoch=run.last_epoch,
            label=ctx.label(run),
            model=percent(nc["model_acc_test"]),
            ncc=percent(nc["ncc_acc_test"]),
            agreement=percent(nc["ncc_agreement_test"]),
        )
    ]
    points = run.series("ncc_agreement_test")
    if len(points) >= 2:
        (e1, a), (e2, b) = points[0], points[-1]
        key = "nc5_agreement_rose" if b > a else "nc5_agreement_not_rose"
        out.append(ctx.t(key, a=percent(a), b=percent(b), e1=e1, e2=e2))
    return out


def orthodev_sentences(ctx: ReportContext, run: AnalyzedRun) -> list:
    out = []
    for ood in run.ood_sets():
        points = run.series(f"nc5_orthodev/{ood}")
        if len(points) >= 2:
            (e1, a), (e2, b) = points[0], points[-1]
            key = "nc5_orthodev_fell" if b < a else "nc5_orthodev_not_fell"
            out.append(
                ctx.t(
                    key,
                    label=ctx.label(run),
                    ood=ctx.dataset_short(ood),
                    a=num(a),
                    b=num(b),
                    e1=e1,
                    e2=e2,
                )
            )
        elif points:
            out.append(
                ctx.t(
                    "nc5_orthodev_last",
                    label=ctx.label(run),
                    ood=ctx.dataset_short(ood),
                    epoch=points[-1][0],
                    value=num(points[-1][1]),
                )
            )
    return out


def build(ctx: ReportContext) -> dict | None:
    runs = [run for run in ctx.runs if "ncc_agreement_test" in run.final.get("nc", {})]
    if not runs:
        return None
    ctx.define_terms("nc5_tp", "nc5_neco")
    sets = ctx.ood_sets(runs)
    orthodev = figures.draw_orthodev(ctx, runs, sets) if sets else None
    return {
        "rows": agreement_rows(ctx, runs),
        "agreement": figures.draw_agreement(ctx, runs),
        "agreement_sentences": [s for run in runs for s in agreement_sentences(ctx, run)],
        "tp_reference": any(r.manifest["dataset"]["name"] == TP_DATASET for r in runs),
        "orthodev": orthodev,
        "orthodev_sentences": [s for run in runs for s in orthodev_sentences(ctx, run)],
        "wide": len(runs) > 1,
    }


@ncood.hookimpl
def register_report_sections(register):
    register(ReportSection("nc5", 45, "sections/nc5.tex.j2", build))
