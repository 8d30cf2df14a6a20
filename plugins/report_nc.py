"""The report's Neural Collapse section: NC metrics measured at every analysed checkpoint."""

from __future__ import annotations

import ncood
from ncood.report.context import ReportContext, ReportSection
from ncood.report.figures import HALF_WIDTH, new_figure, save
from ncood.report.latex import sci


def progression(run, key: str) -> list[tuple[int, float]]:
    return [
        (epoch, results["nc"][key])
        for epoch, results in sorted(run.results.items())
        if key in results.get("nc", {})
    ]


def draw_progress(ctx: ReportContext, key: str):
    fig, (axis,) = new_figure(1, HALF_WIDTH)
    for index, run in enumerate(ctx.runs):
        points = progression(run, key)
        if points:
            axis.plot(
                *zip(*points, strict=True), marker="o", ms=3, color=f"C{index}", label=run.preset
            )
    axis.set(xlabel="epoch", ylabel=key.upper(), yscale="log")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    return save(fig, ctx.figure(f"{key}-progress"))


def build(ctx: ReportContext) -> dict | None:
    if not any(progression(run, "nc1") for run in ctx.runs):
        return None
    sentences = []
    for run in ctx.runs:
        points = progression(run, "nc1")
        if len(points) < 2:
            continue
        (e1, first), (e2, last) = points[0], points[-1]
        key = "nc_decreased" if last < first else "nc_not_decreased"
        sentences.append(
            ctx.t(key, label=ctx.label(run), first=sci(first), last=sci(last), e1=e1, e2=e2)
        )
    return {"progress": ctx.relative(draw_progress(ctx, "nc1")), "sentences": sentences}


@ncood.hookimpl
def register_report_sections(register):
    register(ReportSection("neural-collapse", 40, "sections/nc.tex.j2", build))
