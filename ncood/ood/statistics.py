"""How sure each OOD result is: bootstrap intervals, DeLong p-values, group means.

`add_statistics` reads the per-sample scores of every scorer and writes into results.json's
dictionary, beside the point values:

* ``ood[set][scorer]["auroc_ci"]`` (and ``aupr_in_ci``, ``aupr_out_ci``, ``fpr95_ci``): the
  stratified bootstrap interval (`ncood.ood.bootstrap`), with ``params["bootstrap"]`` saying how;
* ``significance``: per OOD set, DeLong's p-value of every pair of scorers, the best scorer and
  those indistinguishable from it after Holm's correction (`ncood.ood.multiple_testing`);
* ``ood_groups``: per named group of OOD sets, each scorer's mean metrics and their intervals.

It depends only on the scores, so it can be run again after results are merged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ncood.ood.bootstrap import (
    DEFAULT_LEVEL,
    METHOD,
    METRICS,
    id_resamples,
    percentile_interval,
    resampled_metrics,
)
from ncood.ood.delong import pairwise_pvalues
from ncood.ood.groups import group_summary
from ncood.ood.multiple_testing import ALPHA, CORRECTION, compare_with_best
from ncood.ood.spread import constant

SIGNIFICANCE_TEST = "DeLong (midrank algorithm of Sun & Xu 2014), two-sided"


def add_statistics(
    results: dict[str, Any],
    scores: dict[str, dict[str, np.ndarray]],
    *,
    resamples: int,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
    groups: dict[str, list[str]] | None = None,
) -> None:
    """Fill the intervals, p-values and group means of ``results`` from ``scores``
    (scorer → ``"test"`` / ``"ood/<set>"`` → per-sample scores). ``resamples=0``: no bootstrap."""
    sets = list(results.get("ood", {}))
    scorers = [s for s in scores if "test" in scores[s]]
    resampled: dict[str, dict[str, np.ndarray]] = {}
    if resamples and scorers:
        id_counts = id_resamples(seed, resamples, len(scores[scorers[0]]["test"]))
        for ood in sets:
            present = [s for s in scorers if f"ood/{ood}" in scores[s]]
            resampled[ood] = resampled_metrics(
                {s: scores[s]["test"] for s in present},
                {s: scores[s][f"ood/{ood}"] for s in present},
                resamples=resamples,
                seed=seed,
                ood_name=ood,
                id_counts=id_counts,
            )
            for scorer, values in resampled[ood].items():
                bounds = percentile_interval(values, level)
                metrics = results["ood"][ood].setdefault(scorer, {})
                for k, metric in enumerate(METRICS):
                    metrics[f"{metric}_ci"] = [float(bounds[0, k]), float(bounds[1, k])]
        results.setdefault("params", {})["bootstrap"] = {
            "method": METHOD,
            "resamples": resamples,
            "level": level,
            "seed": seed,
            "strata": ["id", "ood"],
        }
    results["significance"] = significance(scores, scorers, sets)
    if groups:
        results["ood_groups"] = {
            name: {
                "sets": members,
                "scorers": group_summary(results["ood"], members, resampled or None, level),
            }
            for name, members in groups.items()
        }


def significance(
    scores: dict[str, dict[str, np.ndarray]], scorers: list[str], sets: list[str]
) -> dict[str, Any]:
    """DeLong p-values of every pair per OOD set, and who is indistinguishable from the best."""
    per_set: dict[str, Any] = {}
    for ood in sets:
        present = [s for s in scorers if f"ood/{ood}" in scores[s]]
        # a degenerate scorer (one score for all, ncood.ood.spread) is compared with none
        present = [s for s in present if not constant(scores[s]["test"], scores[s][f"ood/{ood}"])]
        if len(present) < 2:
            continue
        auroc, pvalues = pairwise_pvalues(
            np.stack([scores[s]["test"] for s in present]),
            np.stack([scores[s][f"ood/{ood}"] for s in present]),
        )
        verdict = compare_with_best(present, auroc, pvalues, ALPHA)
        per_set[ood] = {
            "pairs": {
                a: {b: float(pvalues[i, j]) for j, b in enumerate(present) if j != i}
                for i, a in enumerate(present)
            },
            "best": verdict["best"],
            "p_adjusted": verdict["p_adjusted"],
            "indistinguishable": verdict["indistinguishable"],
        }
    return {"test": SIGNIFICANCE_TEST, "correction": CORRECTION, "alpha": ALPHA, "ood": per_set}
