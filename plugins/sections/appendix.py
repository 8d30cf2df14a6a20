"""The report's appendix: each run's manifest, the scorers and analyses with the parameters
they ran with, and the exact definitions and conventions used."""

from __future__ import annotations

import ncood
from ncood.host.loading import host
from ncood.report.context import ReportContext, ReportSection
from ncood.report.latex import format_param
from ncood.report.seeds import SeedGroup
from ncood.report.uncertainty import bootstrap_params, significance_params

RUNS_PER_TABLE = 3


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
    """A run's manifest as ``key.path → value``, without the normalization constants and
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
        tables.append({"labels": labels, "labels_text": ctx.enumeration(labels), "groups": groups})
    return tables


def scorer_definitions(ctx: ReportContext) -> list[dict]:
    """Every scorer of the results, with the registry's description and the parameters used."""
    rows = []
    for name in ctx.scorers():
        params = {}
        for run in ctx.runs:
            params.update(run.params(name))
        contribution = ctx.scorer(name)
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


# The conventions of ncood.ood.conventions, in the order docs/conventions.md gives them.
METRIC_DEFINITIONS = ("auroc", "aupr_in", "aupr_out", "fpr95", "accuracy")


def statistics_definitions(ctx: ReportContext) -> list:
    """The bootstrap interval, DeLong's test and Holm's correction, when results use them."""
    singles = [m for r in ctx.runs for m in (r.members if isinstance(r, SeedGroup) else [r])]
    found = []
    resampled = [p for run in singles if (p := bootstrap_params(run))]
    if resampled:
        found.append(
            ctx.definition(
                "bootstrap_ci",
                resamples=int(resampled[-1]["resamples"]),
                seed=int(resampled[-1]["seed"]),
            )
        )
    if any(significance_params(run) for run in singles):
        found += [ctx.definition("delong"), ctx.definition("holm")]
    if any(isinstance(r, SeedGroup) for r in ctx.runs):
        found.append(ctx.definition("seed_spread"))
    return found


def tuning_rows(ctx: ReportContext) -> list[dict]:
    """Per run (each seed of a group) and tuned scorer: the grid, each point's validation AUROC,
    the choice, and on what it was made."""
    rows = []
    for run in ctx.runs:
        members = run.members if isinstance(run, SeedGroup) else [run]
        for member in members:
            tuning = member.final.get("tuning")
            if not tuning:
                continue
            label = ctx.label(run)
            if isinstance(run, SeedGroup):
                label = ctx.t(
                    "appendix_tuning_seed",
                    label=label,
                    seed=int(member.manifest["config"].get("seed", 0)),
                )
            for scorer, tuned in tuning.get("scorers", {}).items():
                tried = [
                    {
                        "point": ", ".join(
                            f"{k}={format_param(v)}" for k, v in t["params"].items()
                        ),
                        "auroc": t.get("auroc"),
                        "chosen": t["params"] == tuned["chosen"],
                    }
                    for t in tuned.get("tried", [])
                ]
                rows.append(
                    {
                        "label": label,
                        "scorer": ctx.scorer_title(scorer),
                        "tried": tried,
                        "ood": ctx.dataset_short(tuning["ood"]),
                        "validation": tuning.get("validation", {}),
                    }
                )
    return rows


def build(ctx: ReportContext) -> dict:
    analyses = host().analyses()
    measured = sorted({k for r in ctx.runs for k in r.final if k in analyses})
    definitions = [ctx.definition(name) for name in METRIC_DEFINITIONS]
    definitions += statistics_definitions(ctx)
    tuning = tuning_rows(ctx)
    return {
        "tables": manifest_tables(ctx),
        "scorers": scorer_definitions(ctx),
        "analyses": [analyses.get(n) for n in measured],
        "definitions": definitions + ctx.definitions,
        "tuning": tuning,
        "tuning_text": tuning_text(ctx, tuning),
    }


def tuning_text(ctx: ReportContext, rows: list[dict]):
    if not rows:
        return None
    validation = rows[-1]["validation"]
    return ctx.t(
        "appendix_tuning_text",
        ood=rows[-1]["ood"],
        percent=round(100 * float(validation.get("fraction", 0.0))),
        seed=validation.get("seed", 0),
        size=validation.get("id_size", 0),
        fit=validation.get("fit_size", 0),
    )


@ncood.hookimpl
def register_report_sections(register):
    register(ReportSection("appendix", 1000, "sections/appendix.tex.j2", build))
