"""What the report says about how sure a result is: intervals, ties with the best, seeds.

Sections read the statistics ``ncood analyze`` stored (`ncood.ood.statistics`) through these
helpers, so a run analyzed without them (older results, ``--bootstrap 0``) reads as before.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from ncood.report.context import AnalyzedRun, ReportContext
from ncood.report.latex import num
from ncood.report.seeds import SeedGroup


def interval(ctx: ReportContext, bounds: Any, digits: int = 3) -> Markup | None:
    """``[lo, hi]`` (``[lo ; hi]`` in French, where the comma is the decimal mark)."""
    if isinstance(bounds, list | tuple) and len(bounds) == 2:
        return ctx.t("ci_interval", low=num(bounds[0], digits), high=num(bounds[1], digits))
    return None


def metric_interval(run: AnalyzedRun, ood: str, scorer: str, metric: str) -> list | None:
    """A single run's stored interval for one metric; None for a seed group (its spread is
    the std over seeds) or when the run was analyzed without a bootstrap."""
    if isinstance(run, SeedGroup):
        return None
    return run.final.get("ood", {}).get(ood, {}).get(scorer, {}).get(f"{metric}_ci")


def verdict(run: AnalyzedRun, ood: str) -> dict[str, Any] | None:
    """The stored DeLong/Holm comparison with the best for one OOD set of a single run; None
    unless it compares exactly the scorers the results list for that set (one made over part
    of them would name a "best" the table contradicts)."""
    if isinstance(run, SeedGroup):
        return None
    found = run.final.get("significance", {}).get("ood", {}).get(ood)
    listed = set(run.final.get("ood", {}).get(ood, {}))
    if not found or set(found.get("pairs", {})) != listed or found.get("best") not in listed:
        return None
    return found


def tied_with_best(run: AnalyzedRun, ood: str) -> list[str] | None:
    """The scorers statistically indistinguishable from the best (the best first), or None."""
    found = verdict(run, ood)
    return list(found["indistinguishable"]) if found else None


def seeds_tied(group: SeedGroup, ood: str, scorer: str) -> tuple[int, int]:
    """In how many of the group's seeds ``scorer`` is the best or indistinguishable from it,
    out of how many seeds have the comparison."""
    counted = hits = 0
    for member in group.members:
        tied = tied_with_best(member, ood)
        if tied is not None:
            counted += 1
            hits += scorer in tied
    return hits, counted


def bootstrap_params(run: AnalyzedRun) -> dict[str, Any] | None:
    first = run.members[0] if isinstance(run, SeedGroup) else run
    return first.final.get("params", {}).get("bootstrap")


def significance_params(run: AnalyzedRun) -> dict[str, Any] | None:
    first = run.members[0] if isinstance(run, SeedGroup) else run
    found = first.final.get("significance")
    return found if found and found.get("ood") else None


def same_samples(runs: list[AnalyzedRun], splits: list[str]) -> bool:
    """Whether every run scored the same images on ``splits`` (``"test"``, ``"ood/<set>"``),
    by the digests the manifests record: what a paired test between runs needs."""
    found = set()
    for run in runs:
        digests = (run.manifest.get("dataset") or {}).get("digests") or {}
        if any(split not in digests for split in splits):
            return False
        found.add(tuple(digests[split] for split in splits))
    return len(found) == 1


def paired_auroc_test(
    first: AnalyzedRun, second: AnalyzedRun, ood: str, scorer: str, epoch: int | None = None
) -> tuple[float, float] | None:
    """DeLong's paired test of one scorer's AUROC in two runs scored on the same images
    (ncood.ood.delong): (AUROC of ``second`` − AUROC of ``first``, two-sided p-value). None for
    a seed group (its members' scores are separate samples), runs scored on different images,
    or missing scores. ``epoch``: both runs' last epoch by default."""
    import numpy as np

    from ncood.ood.delong import pairwise_pvalues

    runs = [first, second]
    if any(isinstance(run, SeedGroup) for run in runs):
        return None
    if not same_samples(runs, ["test", f"ood/{ood}"]):
        return None
    scores = []
    for run in runs:
        per_split = run.scores_at(run.last_epoch if epoch is None else epoch).get(scorer, {})
        if "test" not in per_split or f"ood/{ood}" not in per_split:
            return None
        scores.append(per_split)
    auroc, pvalues = pairwise_pvalues(
        np.stack([np.asarray(s["test"], np.float64) for s in scores]),
        np.stack([np.asarray(s[f"ood/{ood}"], np.float64) for s in scores]),
    )
    return float(auroc[1] - auroc[0]), float(pvalues[0, 1])
