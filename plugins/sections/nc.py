"""The report's Neural Collapse section (the TP's section 4, measured rather than simulated):
NC1–NC4 at every analyzed checkpoint, OOD AUROC on the same epochs, NC across the ResNet
stages, the class geometry the assignment asks for, and t-SNE maps of two epochs.

Every sentence is chosen from the numbers (did NC1 fall? which metrics fell?), never written in
advance. The t-SNE embeddings are cached next to each epoch's analysis (ncood/report/tsne.py).
"""

from __future__ import annotations

import numpy as np
from markupsafe import Markup

import ncood
from ncood.errors import NcoodError
from ncood.report import nc_figures as figures
from ncood.report.context import AnalyzedRun, ReportContext, ReportSection
from ncood.report.latex import percent, sci
from ncood.report.tsne import TsneSettings, cached_embedding

# Shown in the table, in this order; all are expected to fall as the features collapse.
TABLE_METRICS = (
    "nc1",
    "nc1_cdnv",
    "nc1_trace_ratio",
    "nc2_equinorm_means",
    "nc2_equinorm_weights",
    "nc2_equiangular_means",
    "nc2_equiangular_weights",
    "nc2_maxangle_means",
    "nc2_maxangle_weights",
    "nc3",
    "nc4_train",
    "nc4_test",
)
TSNE = TsneSettings()
GEOMETRY_ALL_UP_TO = 100  # every class is drawn up to this many (CIFAR-100's matrices)
GEOMETRY_SUBSET = 40  # beyond: this many classes drawn at random, stated in the caption
GEOMETRY_SEED = 0


def nc_runs(ctx: ReportContext) -> list[AnalyzedRun]:
    return [run for run in ctx.runs if run.series("nc1")]


def table(ctx: ReportContext, runs: list[AnalyzedRun]) -> dict:
    """First and last analyzed epoch of each run (one column when a run has one epoch)."""
    columns = []
    for run in runs:
        measured = [e for e, _ in run.series("nc1")]
        epochs = sorted({measured[0], measured[-1]})
        columns.append({"label": ctx.label(run), "epochs": epochs})
    rows = []
    for key in TABLE_METRICS:
        cells = [
            sci(run.results[epoch]["nc"].get(key))
            for run, column in zip(runs, columns, strict=True)
            for epoch in column["epochs"]
        ]
        rows.append({"name": ctx.t(f"nc_metric_{key}"), "cells": cells})
    return {"columns": columns, "rows": rows, "width": sum(len(c["epochs"]) for c in columns)}


def trend_sentences(ctx: ReportContext, run: AnalyzedRun) -> list[Markup]:
    points = run.series("nc1")
    if len(points) < 2:
        return []
    (e1, first), (e2, last) = points[0], points[-1]
    key = "nc_decreased" if last < first else "nc_not_decreased"
    out = [ctx.t(key, label=ctx.label(run), first=sci(first), last=sci(last), e1=e1, e2=e2)]
    start, end = run.results[e1]["nc"], run.results[e2]["nc"]
    compared = [
        (ctx.t(f"nc_metric_{k}"), start[k] > end[k])
        for k in TABLE_METRICS
        if isinstance(start.get(k), int | float) and isinstance(end.get(k), int | float)
    ]
    fell = [name for name, down in compared if down]
    rose = [name for name, down in compared if not down]
    if not rose:
        out.append(ctx.t("nc_all_fell", count=len(compared)))
    else:
        out.append(
            ctx.t(
                "nc_some_fell",
                fell=len(fell),
                count=len(compared),
                rose=ctx.enumeration(rose),
            )
        )
    return out


def ood_sentence(ctx: ReportContext, run: AnalyzedRun, ood: str, scorers: list[str]):
    """As NC1 moves between the first and last checkpoints, how the AUROC of each method moves."""
    changes = []
    for scorer in scorers:
        points = run.auroc_series(ood, scorer)
        if len(points) >= 2:
            changes.append((points[-1][1] - points[0][1], scorer, points[0][1], points[-1][1]))
    nc1 = run.series("nc1")
    if not changes or len(nc1) < 2:
        return None
    changes.sort()
    rose = sum(delta > 0 for delta, *_ in changes)
    best, worst = changes[-1], changes[0]
    values = {
        "label": ctx.label(run),
        "ood": ctx.dataset_short(ood),
        "n1": sci(nc1[0][1]),
        "n2": sci(nc1[-1][1]),
        "e1": nc1[0][0],
        "e2": nc1[-1][0],
        "rose": rose,
        "count": len(changes),
        "up": ctx.scorer_title(best[1]),
        "up_a": best[2],
        "up_b": best[3],
        "down": ctx.scorer_title(worst[1]),
        "down_a": worst[2],
        "down_b": worst[3],
    }
    key = "nc_ood_trend" if worst[0] < 0 < best[0] else "nc_ood_trend_same"
    return ctx.t(key, **values)


def layer_sentences(ctx: ReportContext, run: AnalyzedRun) -> list[Markup]:
    stages = figures.stages_of(run.final)
    if len(stages) < 2:
        return []
    layers = run.final["nc_layers"]
    nc1 = [layers[s]["nc1"] for s in stages]
    acc = [layers[s]["ncc_acc_test"] for s in stages]
    monotone = all(b < a for a, b in zip(nc1, nc1[1:], strict=False))
    values = {
        "label": ctx.label(run),
        "epoch": run.last_epoch,
        "first": stages[0],
        "last": stages[-1],
        "n1": sci(nc1[0]),
        "n2": sci(nc1[-1]),
        "a1": percent(acc[0]),
        "a2": percent(acc[-1]),
    }
    out = [ctx.t("nc_layers_monotone" if monotone else "nc_layers_not_monotone", **values)]
    for stage in stages:
        info = layers[stage]
        if info["feature_dim"] < run.final["test"]["num_classes"] - 1:
            out.append(
                ctx.t(
                    "nc_layers_small_dim",
                    stage=stage,
                    dim=info["feature_dim"],
                    c1=run.final["test"]["num_classes"] - 1,
                    rank=info["nc1_rank"],
                )
            )
    return out


def geometry(ctx: ReportContext, run: AnalyzedRun) -> dict | None:
    """The assignment's figures at the run's last analyzed epoch, and what they show."""
    epoch = run.last_epoch
    geo = run.arrays_at(epoch, "nc")  # what the nc analysis kept (see NeuralCollapse.arrays)
    if "mean_distances" not in geo:
        return None
    c = geo["mean_distances"].shape[0]
    off = ~np.eye(c, dtype=bool)
    distances = geo["mean_distances"][off]
    shown = None
    if c > GEOMETRY_ALL_UP_TO:  # a readable subset; the sentences still use every class
        rng = np.random.default_rng(GEOMETRY_SEED)
        shown = np.sort(rng.choice(c, GEOMETRY_SUBSET, replace=False))
    sentence_values = {
        "label": ctx.label(run),
        "epoch": epoch,
        "dist_cv": float(distances.std() / distances.mean()),
        "var_min": sci(geo["within_variance"].min()),
        "var_max": sci(geo["within_variance"].max()),
    }
    sentences = [ctx.t("nc_geometry_distances", **sentence_values)]
    if geo.get("weight_mean_cosines") is not None:
        cosines = geo["weight_mean_cosines"]
        sentences.append(
            ctx.t(
                "nc_geometry_cosines",
                own=float(np.mean(np.diag(cosines))),
                other=float(np.mean(cosines[off])),
                etf=-1.0 / (c - 1),
            )
        )
    subset = None
    if shown is not None:
        subset = ctx.t("nc_geometry_subset", shown=len(shown), classes=c, seed=GEOMETRY_SEED)
    return {
        "figure": figures.draw_geometry(ctx, run, geo, epoch, shown),
        "subset": subset,
        "epoch": epoch,
        "label": ctx.label(run),
        "slug": ctx.run_slug(run),
        "sentences": sentences,
    }


def tsne(ctx: ReportContext, run: AnalyzedRun) -> dict | None:
    """t-SNE of the test features at the first and last analyzed epochs of ``run``."""
    from sklearn.metrics import silhouette_score

    epochs = [e for e in sorted(run.results) if run.run.features(e).is_file()]
    if not epochs:
        return None
    shown = sorted({epochs[0], epochs[-1]})
    maps, silhouettes = [], []
    for epoch in shown:
        try:
            embedding, labels = cached_embedding(run.run, epoch, TSNE)
        except NcoodError:
            return None
        maps.append((epoch, embedding, labels))
        many = len(np.unique(labels)) > 1
        silhouettes.append(float(silhouette_score(embedding, labels)) if many else None)
    sentence = None
    if len(shown) == 2 and None not in silhouettes:
        key = "nc_tsne_tighter" if silhouettes[1] > silhouettes[0] else "nc_tsne_not_tighter"
        sentence = ctx.t(
            key,
            e1=shown[0],
            e2=shown[1],
            s1=silhouettes[0],
            s2=silhouettes[1],
            label=ctx.label(run),
        )
    return {
        "figure": figures.draw_tsne(ctx, run, maps),
        "label": ctx.label(run),
        "slug": ctx.run_slug(run),
        "epochs": shown,
        "epochs_text": ctx.enumeration([str(e) for e in shown]),
        "points": len(maps[0][2]),
        "classes": len(np.unique(maps[0][2])),
        "sentence": sentence,
    }


def refs(ctx: ReportContext, prefix: str, runs: list[dict]) -> Markup | None:
    """``\\ref``s to one figure per run, joined as the language lists things."""
    if not runs:
        return None
    return ctx.enumeration([Markup(rf"\ref{{fig:{prefix}-{r['slug']}}}") for r in runs])


def build(ctx: ReportContext) -> dict | None:
    runs = nc_runs(ctx)
    if not runs:
        return None
    ctx.define_terms("nc1", "cdnv", "nc2", "nc3", "nc4")
    per_run = []
    for run in runs:
        sets, scorers = run.ood_sets(), run.scorers()
        ood_figure = figures.draw_ood_progress(ctx, run, sets, scorers) if scorers else None
        ood_sentences = [ood_sentence(ctx, run, o, scorers) for o in sets] if ood_figure else []
        per_run.append(
            {
                "label": ctx.label(run),
                "slug": ctx.run_slug(run),
                "trend": trend_sentences(ctx, run),
                "ood_figure": ood_figure,
                "ood_sentences": [s for s in ood_sentences if s is not None],
                "layers": layer_sentences(ctx, run),
                "geometry": geometry(ctx, run),
                "tsne": tsne(ctx, run),
            }
        )
    geometry_runs = [r for r in per_run if r["geometry"]]
    tsne_runs = [r for r in per_run if r["tsne"]]
    return {
        "progress": figures.draw_nc1_nc3(ctx, runs),
        "metrics": figures.draw_all_metrics(ctx, runs),
        "layers": figures.draw_layers(ctx, runs),
        "table": table(ctx, runs),
        "runs": per_run,
        "ood_refs": refs(ctx, "nc-ood", [r for r in per_run if r["ood_figure"]]),
        "geometry_runs": geometry_runs,
        "tsne_runs": tsne_runs,
        "tsne_refs": refs(ctx, "nc-tsne", tsne_runs),
        "tsne_max_classes": TSNE.max_classes,
        "tsne_max_points": TSNE.max_points,
    }


@ncood.hookimpl
def register_report_sections(register):
    register(ReportSection("neural-collapse", 40, "sections/nc.tex.j2", build))
