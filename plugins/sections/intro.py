"""The report's introduction (the TP's section 1): what was trained on which data, which OOD
sets and methods, which Neural Collapse properties were measured."""

from __future__ import annotations

import re

import ncood
from ncood.report.context import STANDARD_WIDTH, ReportContext, ReportSection
from ncood.report.seeds import SeedGroup

_NC_KEY = re.compile(r"^nc(\d)(?:$|_)")


def nc_measured(ctx: ReportContext) -> list[int]:
    """Which of NC1…NC5 the analyses measured (keys ``ncK`` or ``ncK_…`` of results['nc'])."""
    keys = {key for run in ctx.runs for key in run.final.get("nc", {})}
    return sorted({int(m.group(1)) for key in keys if (m := _NC_KEY.match(key))})


def build(ctx: ReportContext) -> dict:
    first = ctx.runs[0].manifest
    oods: dict[str, int] = {}
    for run in ctx.runs:
        for name, size in run.manifest["dataset"]["ood"].items():
            oods.setdefault(name, size)
    ood_items = [
        ctx.t("intro_ood_item", name=ctx.dataset_title(name), size=size)
        for name, size in oods.items()
    ]
    nc = nc_measured(ctx)
    if nc and nc == list(range(nc[0], nc[-1] + 1)) and len(nc) > 2:
        nc_text = ctx.t("intro_nc_range", first=nc[0], last=nc[-1])
    else:
        nc_text = ctx.enumeration([f"NC{k}" for k in nc])
    datasets = ctx.id_datasets()
    widths = sorted({r.manifest.get("model", {}).get("width", STANDARD_WIDTH) for r in ctx.runs})
    return {
        "dataset": ctx.id_title(),
        "classes": first["dataset"]["num_classes"],
        "train_size": first["dataset"]["train_size"],
        "test_size": first["dataset"]["test_size"],
        "ood": ctx.enumeration(ood_items),
        "methods": ctx.enumeration([ctx.scorer_title(s) for s in ctx.scorers()]),
        "nc": nc_text,
        "checkpoints": sum(len(r.results) for r in ctx.runs),
        "runs": ctx.enumeration([ctx.label(r) for r in ctx.runs]),
        "run_count": len(ctx.runs),
        "seeds": [
            ctx.t(
                "intro_seeds",
                label=ctx.label(r),
                count=len(r.members),
                seeds=ctx.enumeration([str(s) for s in r.seeds]),
            )
            for r in ctx.runs
            if isinstance(r, SeedGroup)
        ],
        "notes": [ctx.t(f"intro_note_{d}") for d in datasets if ctx.has(f"intro_note_{d}")],
        "narrow": [w for w in widths if w != STANDARD_WIDTH],
        "all_imported": all(r.imported for r in ctx.runs),
        "imported": imported_note(ctx),
    }


def imported_note(ctx: ReportContext):
    """Which runs ncood did not train (``ncood extract``), when some did train."""
    imported = [r for r in ctx.runs if r.imported]
    if not imported or len(imported) == len(ctx.runs):
        return None
    key = "intro_imported_one" if len(imported) == 1 else "intro_imported_many"
    runs = ctx.enumeration([ctx.label(r) for r in imported])
    return ctx.t(key, runs=runs, ref=ctx.section_ref("training"))


@ncood.hookimpl
def register_report_sections(register):
    register(ReportSection("introduction", 10, "sections/intro.tex.j2", build))
