"""The report's frame: the introduction and the appendix with each run's manifest."""

from __future__ import annotations

import ncood
from ncood.report.context import ReportContext, ReportSection


def dataset_name(ctx: ReportContext) -> str:
    return ", ".join(sorted({r.manifest["dataset"]["name"] for r in ctx.runs}))


def ood_names(ctx: ReportContext) -> str:
    return ", ".join(sorted({n for r in ctx.runs for n in r.manifest["dataset"]["ood"]}))


def build_intro(ctx: ReportContext) -> dict:
    return {
        "dataset": dataset_name(ctx),
        "classes": ctx.runs[0].manifest["dataset"]["num_classes"],
        "ood": ood_names(ctx),
    }


def _flatten(prefix: str, value, out: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)
    elif isinstance(value, list):
        out.append((prefix, ", ".join(str(v) for v in value) or "--"))
    elif value is None:
        out.append((prefix, "--"))
    elif isinstance(value, float):
        out.append((prefix, f"{value:.6g}"))
    else:
        out.append((prefix, str(value)))


def build_appendix(ctx: ReportContext) -> dict:
    runs = []
    for run in ctx.runs:
        shown = {k: run.manifest.get(k) for k in ("seed", "versions", "dataset", "model", "config")}
        shown["dataset"] = {k: v for k, v in shown["dataset"].items() if k not in ("mean", "std")}
        items: list[tuple[str, str]] = []
        _flatten("", shown, items)
        runs.append({"label": ctx.label(run), "rows": items})
    return {"runs": runs}


@ncood.hookimpl
def register_report_sections(register):
    register(ReportSection("introduction", 10, "sections/intro.tex.j2", build_intro))
    register(ReportSection("appendix", 1000, "sections/appendix.tex.j2", build_appendix))
