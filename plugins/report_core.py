"""The report's frame: the introduction (the TP's section 1) and the appendix with each run's
manifest and the exact definitions and conventions used."""

from __future__ import annotations

import re

from markupsafe import Markup

import ncood
from ncood.plugins import host
from ncood.report.context import Definition, ReportContext, ReportSection
from ncood.report.latex import escape

STANDARD_WIDTH = 64  # the ResNet-18 base width; the demo presets shrink it
RUNS_PER_TABLE = 3
_NC_KEY = re.compile(r"^nc(\d)(?:$|_)")


def dataset_name(ctx: ReportContext) -> str:
    return ", ".join(sorted({r.manifest["dataset"]["name"] for r in ctx.runs}))


def ood_names(ctx: ReportContext) -> str:
    return ", ".join(sorted({n for r in ctx.runs for n in r.manifest["dataset"]["ood"]}))


def dataset_title(ctx: ReportContext) -> Markup:
    """The in-distribution dataset(s) as the text names them."""
    names = sorted({r.manifest["dataset"]["name"] for r in ctx.runs})
    return Markup(", ").join(ctx.dataset_title(n) for n in names)


def dataset_short(ctx: ReportContext) -> Markup:
    """The in-distribution dataset(s) by short name, for titles and repeated mentions."""
    names = sorted({r.manifest["dataset"]["name"] for r in ctx.runs})
    return Markup(", ").join(ctx.dataset_short(n) for n in names)


def scorers_in_results(ctx: ReportContext) -> list[str]:
    """Every scorer with a result at the last epoch of some run, in first-seen order."""
    seen: list[str] = []
    for run in ctx.runs:
        for per_scorer in run.final.get("ood", {}).values():
            seen += [s for s in per_scorer if s not in seen]
    return seen


def format_param(value) -> str:
    """A parameter as a reader wants it: floats to 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def scorer_title(name: str) -> str:
    scorers = host().scorers()
    return scorers.get(name).display if name in scorers else name


def enumeration(ctx: ReportContext, items: list) -> Markup:
    """``a, b et c`` in the document's language (items escaped unless Markup)."""
    items = [escape(i) for i in items]
    if len(items) <= 1:
        return Markup("").join(items)
    return Markup(", ").join(items[:-1]) + Markup(" ") + ctx.t("and") + Markup(" ") + items[-1]


def nc_measured(ctx: ReportContext) -> list[int]:
    """Which of NC1…NC5 the analyses measured (keys ``ncK`` or ``ncK_…`` of results['nc'])."""
    keys = {key for run in ctx.runs for key in run.final.get("nc", {})}
    return sorted({int(m.group(1)) for key in keys if (m := _NC_KEY.match(key))})


def build_intro(ctx: ReportContext) -> dict:
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
        nc_text = enumeration(ctx, [f"NC{k}" for k in nc])
    datasets = sorted({r.manifest["dataset"]["name"] for r in ctx.runs})
    widths = sorted({r.manifest.get("model", {}).get("width", STANDARD_WIDTH) for r in ctx.runs})
    return {
        "dataset": dataset_title(ctx),
        "classes": first["dataset"]["num_classes"],
        "train_size": first["dataset"]["train_size"],
        "test_size": first["dataset"]["test_size"],
        "ood": enumeration(ctx, ood_items),
        "methods": enumeration(ctx, [scorer_title(s) for s in scorers_in_results(ctx)]),
        "nc": nc_text,
        "checkpoints": sum(len(r.results) for r in ctx.runs),
        "runs": enumeration(ctx, [ctx.label(r) for r in ctx.runs]),
        "run_count": len(ctx.runs),
        "notes": [ctx.t(f"intro_note_{d}") for d in datasets if ctx.has(f"intro_note_{d}")],
        "narrow": [w for w in widths if w != STANDARD_WIDTH],
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


MANIFEST_GROUPS = ("seed", "device", "status", "created", "finished", "versions", "dataset")
MANIFEST_GROUPS += ("model", "config")


def manifest_rows(run) -> dict[str, str]:
    """A run's manifest as ``key.path → value``, without the normalisation constants and
    checksums (long, and not what a reader compares)."""
    shown = {k: run.manifest.get(k) for k in MANIFEST_GROUPS if k in run.manifest}
    if isinstance(shown.get("dataset"), dict):
        shown["dataset"] = {k: v for k, v in shown["dataset"].items() if k not in ("mean", "std")}
    items: list[tuple[str, str]] = []
    _flatten("", shown, items)
    return dict(items)


def manifest_tables(ctx: ReportContext) -> list[dict]:
    """One table per group of runs, a column per run, the rows every manifest key."""
    tables = []
    for start in range(0, len(ctx.runs), RUNS_PER_TABLE):
        runs = ctx.runs[start : start + RUNS_PER_TABLE]
        columns = [manifest_rows(run) for run in runs]
        keys: list[str] = []
        for column in columns:
            keys += [k for k in column if k not in keys]
        groups: list[dict] = []
        for key in keys:
            group = key.split(".")[0] if "." in key else ""
            if not groups or groups[-1]["name"] != group:
                groups.append({"name": group, "rows": []})
            values = [column.get(key, "--") for column in columns]
            groups[-1]["rows"].append(
                {"key": key, "cells": values, "differs": len(set(values)) > 1}
            )
        labels = [ctx.label(r) for r in runs]
        tables.append({"labels": labels, "labels_text": enumeration(ctx, labels), "groups": groups})
    return tables


def scorer_definitions(ctx: ReportContext) -> list[dict]:
    """Every scorer of the results, with the registry's description and the parameters used."""
    scorers = host().scorers()
    rows = []
    for name in scorers_in_results(ctx):
        params = {}
        for run in ctx.runs:
            params.update(run.final.get("params", {}).get(name, {}) or {})
        contribution = scorers.get(name) if name in scorers else None
        key = f"scorer_def_{name}"
        rows.append(
            {
                "title": contribution.display if contribution else name,
                "name": name,
                "definition": ctx.t(key)
                if ctx.has(key)
                else (contribution.description if contribution else ctx.t("unknown_scorer")),
                "plugin": contribution.plugin if contribution else "?",
                "params": [f"{k}={format_param(v)}" for k, v in sorted(params.items())],
            }
        )
    return rows


# The conventions of ncood.conventions, in the order docs/conventions.md gives them.
METRIC_DEFINITIONS = ("auroc", "aupr_in", "aupr_out", "fpr95", "accuracy")


def build_appendix(ctx: ReportContext) -> dict:
    analyses = host().analyses()
    measured = sorted({k for r in ctx.runs for k in r.final if k in analyses})
    definitions = [
        Definition(ctx.t(f"def_{m}_term"), ctx.t(f"def_{m}_formula"), ctx.t(f"def_{m}_meaning"))
        for m in METRIC_DEFINITIONS
    ]
    return {
        "tables": manifest_tables(ctx),
        "scorers": scorer_definitions(ctx),
        "analyses": [analyses.get(n) for n in measured],
        "definitions": definitions + ctx.definitions,
    }


@ncood.hookimpl
def register_report_sections(register):
    register(ReportSection("introduction", 10, "sections/intro.tex.j2", build_intro))
    register(ReportSection("appendix", 1000, "sections/appendix.tex.j2", build_appendix))
