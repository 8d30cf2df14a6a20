"""Figures of the Neural Collapse sections: measured curves along training, across layers,
the class geometry at one epoch and t-SNE maps. Each function draws one figure and returns the
path LaTeX includes (or ``None`` when there is nothing to draw)."""

from __future__ import annotations

import numpy as np

from ncood.report.context import AnalyzedRun, ReportContext, plain
from ncood.report.figures import (
    bottom_legend,
    dense_scatter,
    grid,
    integer_epochs,
    integer_ticks,
    legend_handle,
    new_figure,
)
from ncood.report.seeds import plot_curve, plot_points

STAGE_ORDER = ("layer1", "layer2", "layer3", "layer4")


def draw_nc1_nc3(ctx: ReportContext, runs: list[AnalyzedRun]):
    """The TP's Figures 3 and 4, measured: NC1 and NC3 at every checkpoint, one panel a run."""
    runs = [r for r in runs if len(r.series("nc1")) >= 1]
    if not runs:
        return None
    fig, axes, rows = grid(len(runs), width=3.3 if len(runs) <= 2 else 2.45, height=2.4)
    for axis, run in zip(axes, runs, strict=True):
        plot_points(axis, run.series("nc1"), log=True, color="C0", label="NC1")
        plot_points(axis, run.series("nc3"), log=True, color="C3", ls="--", label="NC3")
        axis.set(yscale="log", xlabel=ctx.text("fig_epoch"), title=ctx.plain_label(run))
        axis.grid(alpha=0.3, which="both", lw=0.4)
        axis.legend(loc="best")
    integer_epochs(fig.axes)
    return ctx.save_figure(fig, "nc-nc1-nc3-progress")


# (panel title key, [(results key, line style, legend key)], log scale)
METRIC_PANELS = (
    ("fig_nc_panel_nc1", [("nc1", "-", "NC1"), ("nc1_cdnv", "--", "CDNV")], True),
    (
        "fig_nc_panel_equinorm",
        [("nc2_equinorm_means", "-", "fig_nc_means"), ("nc2_equinorm_weights", "--", "fig_nc_w")],
        False,
    ),
    (
        "fig_nc_panel_equiangular",
        [
            ("nc2_equiangular_means", "-", "fig_nc_means"),
            ("nc2_equiangular_weights", "--", "fig_nc_w"),
        ],
        False,
    ),
    (
        "fig_nc_panel_maxangle",
        [("nc2_maxangle_means", "-", "fig_nc_means"), ("nc2_maxangle_weights", "--", "fig_nc_w")],
        False,
    ),
    ("fig_nc_panel_nc3", [("nc3", "-", "NC3")], True),
    (
        "fig_nc_panel_nc4",
        [("nc4_train", "-", "fig_nc_train"), ("nc4_test", "--", "fig_nc_test")],
        False,
    ),
)


def _legend_text(ctx: ReportContext, key: str) -> str:
    return ctx.text(key) if ctx.has(key) else key


def draw_all_metrics(ctx: ReportContext, runs: list[AnalyzedRun]):
    """Every NC1–NC4 metric along training: one panel a property, one colour a run."""
    runs = [r for r in runs if len(r.series("nc1")) >= 1]
    if not runs:
        return None
    fig, axes, rows = grid(len(METRIC_PANELS))
    for axis, (title, lines, log) in zip(axes, METRIC_PANELS, strict=True):
        for index, run in enumerate(runs):
            for key, style, _ in lines:
                plot_points(axis, run.series(key), log=log, color=f"C{index % 10}", ls=style)
        axis.set(title=ctx.text(title), xlabel=ctx.text("fig_epoch"))
        if log:
            axis.set_yscale("log")
        axis.grid(alpha=0.3, lw=0.4)
        style_handles = [legend_handle(color="k", ls=s, lw=1) for _, s, _ in lines]
        if len(lines) > 1:
            axis.legend(style_handles, [_legend_text(ctx, k) for _, _, k in lines], loc="best")
    run_handles = [legend_handle(color=f"C{i % 10}", marker="o", ms=3) for i in range(len(runs))]
    bottom_legend(fig, run_handles, [ctx.plain_label(r) for r in runs], rows, ncol=len(runs))
    integer_epochs(fig.axes)
    return ctx.save_figure(fig, "nc-all-metrics", tight=False)


def draw_ood_progress(ctx: ReportContext, run: AnalyzedRun, sets: list[str], scorers: list[str]):
    """AUROC of every scorer at every analyzed checkpoint, one panel per OOD set, with NC1."""
    sets = [o for o in sets if any(len(run.auroc_series(o, s)) >= 2 for s in scorers)]
    if not sets:
        return None
    fig, axes, rows = grid(len(sets) + 1, width=2.6, height=2.3)
    colours = _scorer_colours(scorers)
    nc_axis, ood_axes = axes[0], axes[1:]
    plot_points(nc_axis, run.series("nc1"), log=True, color="k", label="NC1")
    nc_axis.set(yscale="log", title="NC1", xlabel=ctx.text("fig_epoch"))
    nc_axis.grid(alpha=0.3, lw=0.4)
    for axis, ood in zip(ood_axes, sets, strict=True):
        for scorer in scorers:
            colour, style = colours[scorer]
            plot_points(axis, run.auroc_series(ood, scorer), color=colour, ls=style, ms=2)
        axis.axhline(0.5, color="grey", lw=0.7, ls=":")
        axis.set(
            title=ctx.text("fig_nc_auroc_panel", ood=ctx.dataset_plain(ood)),
            xlabel=ctx.text("fig_epoch"),
            ylabel="AUROC",
            ylim=(-0.02, 1.02),
        )
        axis.grid(alpha=0.3, lw=0.4)
    handles = [
        legend_handle(color=colours[s][0], ls=colours[s][1], marker="o", ms=3) for s in scorers
    ]
    ncol = min(len(scorers), 7)
    legend_rows = -(-len(scorers) // ncol)
    bottom_legend(
        fig,
        handles,
        [plain(ctx.scorer_title(s)) for s in scorers],
        rows,
        ncol,
        0.07 * (legend_rows + 1),
    )
    integer_epochs(fig.axes)
    return ctx.save_figure(fig, f"nc-ood-progress-{ctx.run_slug(run)}", tight=False)


def _scorer_colours(scorers: list[str]) -> dict[str, tuple]:
    """tab20 pairs a dark and a light shade: the light one is drawn dashed, to tell them apart."""
    import matplotlib

    palette = matplotlib.colormaps["tab20"]
    return {s: (palette(i % 20), "--" if i % 2 else "-") for i, s in enumerate(scorers)}


def stages_of(results: dict) -> list[str]:
    layers = results.get("nc_layers", {}) or {}
    known = [s for s in STAGE_ORDER if s in layers]
    return known + sorted(s for s in layers if s not in STAGE_ORDER)


def draw_layers(ctx: ReportContext, runs: list[AnalyzedRun]):
    """NC1 and NCC test accuracy at each stage, first (dotted) and last analyzed epoch."""
    runs = [r for r in runs if stages_of(r.final)]
    if not runs:
        return None
    fig, (nc1_axis, acc_axis) = new_figure(2, (6.4, 2.6))
    handles, labels = [], []
    for index, run in enumerate(runs):
        epochs = sorted(e for e, r in run.results.items() if stages_of(r))
        shown = [epochs[0], epochs[-1]] if len(epochs) > 1 else epochs
        for epoch, style in zip(shown, (":", "-")[-len(shown) :], strict=True):
            layers = run.results[epoch]["nc_layers"]
            stages = stages_of(run.results[epoch])
            x = np.arange(len(stages))
            nc1 = [layers[s]["nc1"] if layers[s]["nc1"] > 0 else np.nan for s in stages]
            colour = f"C{index % 10}"
            plot_curve(nc1_axis, x, nc1, marker="o", ms=3, ls=style, color=colour)
            acc = [100 * layers[s]["ncc_acc_test"] for s in stages]
            plot_curve(acc_axis, x, acc, marker="o", ms=3, ls=style, color=colour)
            handles.append(legend_handle(color=colour, ls=style, marker="o", ms=3))
            labels.append(ctx.text("fig_nc_layers_line", label=ctx.plain_label(run), epoch=epoch))
        for axis in (nc1_axis, acc_axis):
            axis.set_xticks(np.arange(len(stages)), [plain(s) for s in stages])
    nc1_axis.set(yscale="log", ylabel="NC1", xlabel=ctx.text("fig_nc_stage"))
    acc_axis.set(ylabel=ctx.text("fig_nc_ncc_acc"), xlabel=ctx.text("fig_nc_stage"), ylim=(0, 101))
    for axis in (nc1_axis, acc_axis):
        axis.grid(alpha=0.3, lw=0.4)
    rows = -(-len(labels) // 2)
    bottom_legend(fig, handles, labels, 1, ncol=2, space=0.09 * (rows + 1))
    return ctx.save_figure(fig, "nc-layers", tight=False)


def draw_geometry(ctx: ReportContext, run: AnalyzedRun, geometry: dict, epoch: int, shown=None):
    """The assignment's three figures at one epoch: distances between class means,
    within-class variance per class, cosines of classifier rows against centred means.
    ``shown``: the classes drawn (all by default; a subset keeps 1,000 classes readable)."""
    if shown is not None:
        pick = np.ix_(shown, shown)
        geometry = {
            "mean_distances": geometry["mean_distances"][pick],
            "within_variance": geometry["within_variance"][shown],
            "weight_mean_cosines": None
            if geometry["weight_mean_cosines"] is None
            else geometry["weight_mean_cosines"][pick],
        }
    fig, (dist_axis, var_axis, cos_axis) = new_figure(3, (7.0, 2.55))
    distances = geometry["mean_distances"]
    c = distances.shape[0]
    image = dist_axis.imshow(distances, cmap="viridis", interpolation="nearest")
    fig.colorbar(image, ax=dist_axis, fraction=0.046, pad=0.04)
    dist_axis.set(title=ctx.text("fig_nc_distances"), xlabel="c", ylabel="c'")
    var_axis.bar(np.arange(c), geometry["within_variance"], color="C0", width=0.8)
    var_axis.set(
        title=ctx.text("fig_nc_variance"), xlabel=ctx.text("fig_nc_class"), xlim=(-0.7, c - 0.3)
    )
    var_axis.grid(alpha=0.3, lw=0.4, axis="y")
    integer_ticks(var_axis.xaxis)
    cosines = geometry.get("weight_mean_cosines")
    if cosines is not None:
        image = cos_axis.imshow(cosines, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
        fig.colorbar(image, ax=cos_axis, fraction=0.046, pad=0.04)
    cos_axis.set(
        title=ctx.text("fig_nc_cosines"),
        xlabel=ctx.text("fig_nc_mean_c"),
        ylabel=ctx.text("fig_nc_row_w"),
    )
    for axis in (dist_axis, cos_axis):
        if c <= 12:
            axis.set_xticks(range(c))
            axis.set_yticks(range(c))
    if shown is not None:  # the ticks name the classes drawn, not their positions
        ticks = list(range(0, c, max(1, c // 4)))
        labels = [str(int(shown[i])) for i in ticks]
        for axis in (dist_axis, var_axis, cos_axis):
            axis.set_xticks(ticks, labels)
        for axis in (dist_axis, cos_axis):
            axis.set_yticks(ticks, labels)
    return ctx.save_figure(fig, f"nc-geometry-{ctx.run_slug(run)}-{epoch}")


def draw_tsne(ctx: ReportContext, run: AnalyzedRun, maps: list[tuple[int, np.ndarray, np.ndarray]]):
    """t-SNE of the test features at each given epoch, coloured by class (the TP's Figs 5–6)."""
    import matplotlib

    fig, axes = new_figure(len(maps), (3.3 * len(maps) + 0.3, 3.3))
    classes = sorted({int(c) for _, _, labels in maps for c in labels})
    palette = matplotlib.colormaps["tab10" if len(classes) <= 10 else "tab20"]
    colour = {c: palette(i % palette.N) for i, c in enumerate(classes)}
    for axis, (epoch, embedding, labels) in zip(axes, maps, strict=True):
        dense_scatter(
            axis, embedding[:, 0], embedding[:, 1], c=[colour[int(c)] for c in labels], s=3
        )
        axis.set(title=ctx.text("fig_nc_tsne_panel", epoch=epoch, n=len(labels)))
        axis.set_xticks([])
        axis.set_yticks([])
        for spine in axis.spines.values():
            spine.set_visible(False)
        axis.set_aspect("equal", adjustable="datalim")
    handles = [legend_handle(ls="", marker="o", ms=4, color=colour[c]) for c in classes]
    ncol = min(len(classes), 10)
    bottom_legend(
        fig, handles, [str(c) for c in classes], 1, ncol, 0.07 * (-(-len(classes) // ncol) + 1)
    )
    return ctx.save_figure(fig, f"nc-tsne-{ctx.run_slug(run)}", tight=False)


def draw_agreement(ctx: ReportContext, runs: list[AnalyzedRun]):
    """NC5 as the TP reads it: network accuracy, NCC accuracy and their agreement on test."""
    runs = [r for r in runs if r.series("ncc_agreement_test")]
    if not runs:
        return None
    fig, axes, rows = grid(len(runs), width=3.3 if len(runs) <= 2 else 2.45, height=2.4)
    lines = (
        ("model_acc_test", "C0", "-", "fig_nc5_model"),
        ("ncc_acc_test", "C2", "--", "fig_nc5_ncc"),
        ("ncc_agreement_test", "C3", "-", "fig_nc5_agreement"),
    )
    for axis, run in zip(axes, runs, strict=True):
        for key, colour, style, _ in lines:
            points = [(e, 100 * v) for e, v in run.series(key)]
            plot_points(axis, points, color=colour, ls=style)
        axis.set(title=ctx.plain_label(run), xlabel=ctx.text("fig_epoch"), ylabel="%")
        axis.set_ylim(top=101)
        axis.grid(alpha=0.3, lw=0.4)
    handles = [legend_handle(color=c, ls=s, marker="o", ms=3) for _, c, s, _ in lines]
    bottom_legend(fig, handles, [ctx.text(k) for *_, k in lines], rows, ncol=3, space=0.13)
    integer_epochs(fig.axes)
    return ctx.save_figure(fig, "nc5-agreement", tight=False)


def draw_orthodev(ctx: ReportContext, runs: list[AnalyzedRun], sets: list[str]):
    """NECO's NC5: mean |cos(μ_c, μ_G^OOD)| per OOD set along training (dashed: centred)."""
    runs = [r for r in runs if any(r.series(f"nc5_orthodev/{o}") for o in sets)]
    if not runs:
        return None
    fig, axes, rows = grid(len(runs), width=3.3 if len(runs) <= 2 else 2.45, height=2.4)
    for axis, run in zip(axes, runs, strict=True):
        for index, ood in enumerate(sets):
            colour = f"C{index % 10}"
            plot_points(axis, run.series(f"nc5_orthodev/{ood}"), color=colour)
            plot_points(axis, run.series(f"nc5_orthodev_centred/{ood}"), color=colour, ls="--")
        axis.set(title=ctx.plain_label(run), xlabel=ctx.text("fig_epoch"), ylim=(0, 1.02))
        axis.set_ylabel(ctx.text("fig_nc5_orthodev"))
        axis.grid(alpha=0.3, lw=0.4)
    handles = [legend_handle(color=f"C{i % 10}", marker="o", ms=3) for i in range(len(sets))]
    handles += [legend_handle(color="k", ls=s) for s in ("-", "--")]
    labels = [ctx.dataset_plain(o) for o in sets]
    labels += [ctx.text("fig_nc5_uncentred"), ctx.text("fig_nc5_centred")]
    bottom_legend(fig, handles, labels, rows, ncol=min(len(labels), 4), space=0.13)
    integer_epochs(fig.axes)
    return ctx.save_figure(fig, "nc5-orthodev", tight=False)
