"""``ncood analyze``: fit each scorer on ID train, score test and every OOD set, run analyses.

A scorer or analysis that raises does not stop the others: its error is recorded in
results.json and the caller reports a non-zero exit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ncood.atomic import write_json
from ncood.conventions import ood_metrics
from ncood.errors import NcoodError
from ncood.features import FeatureDump, load_features
from ncood.plugins import PluginHost
from ncood.scores_file import save_scores
from ncood.scoring import Contribution


@dataclass
class AnalysisOutcome:
    results: dict[str, Any]
    scores: dict[str, dict[str, np.ndarray]] = field(
        default_factory=dict
    )  # scorer → split → scores
    failures: list[str] = field(default_factory=list)


def select(
    host: PluginHost, names: list[str] | None
) -> tuple[list[Contribution], list[Contribution]]:
    """Split the requested names into scorers and analyses; unknown names list what exists."""
    scorers, analyses = host.scorers(), host.analyses()
    if not names:
        return [s for _, s in scorers.items()], [a for _, a in analyses.items()]
    chosen_scorers, chosen_analyses = [], []
    for name in names:
        if name in scorers:
            chosen_scorers.append(scorers.get(name))
        elif name in analyses:
            chosen_analyses.append(analyses.get(name))
        else:
            known = ", ".join(sorted([*scorers.names(), *analyses.names()]))
            raise NcoodError(f"unknown plugin {name!r} (known: {known})")
    return chosen_scorers, chosen_analyses


def check_settings(settings: dict[str, dict[str, str]], chosen: list[Contribution]) -> None:
    names = {c.name for c in chosen}
    for name in settings:
        if name not in names:
            raise NcoodError(
                f"--set names {name!r}, which is not among the selected plugins "
                f"({', '.join(sorted(names))})"
            )


def analyse_dump(
    dump: FeatureDump,
    scorers: list[Contribution],
    analyses: list[Contribution],
    settings: dict[str, dict[str, str]] | None = None,
    *,
    on_step=None,
) -> AnalysisOutcome:
    settings = settings or {}
    check_settings(settings, [*scorers, *analyses])
    built = {c.name: c.build(settings.get(c.name)) for c in [*scorers, *analyses]}
    outcome = AnalysisOutcome(
        results={
            "ood": {name: {} for name in dump.ood},
            "params": {name: params for name, (_, params) in built.items()},
            "timings": {},
            "errors": {},
            "test": {"num_classes": dump.num_classes, "feature_dim": dump.feature_dim},
        }
    )
    for contribution in scorers:
        scorer, _ = built[contribution.name]
        started = time.perf_counter()
        try:
            per_split = fit_and_score(scorer, dump)
            resolved = getattr(scorer, "resolved_params", None)
            if isinstance(resolved, dict):
                outcome.results["params"][contribution.name].update(resolved)
            for ood_name in dump.ood:
                outcome.results["ood"][ood_name][contribution.name] = ood_metrics(
                    per_split["test"], per_split[f"ood/{ood_name}"]
                )
            outcome.scores[contribution.name] = per_split
        except Exception as exc:  # one scorer's failure must not cost the others' results
            outcome.results["errors"][contribution.name] = describe(exc)
            outcome.failures.append(contribution.name)
        outcome.results["timings"][contribution.name] = time.perf_counter() - started
        if on_step:
            on_step(contribution.name)
    for contribution in analyses:
        analysis, _ = built[contribution.name]
        started = time.perf_counter()
        try:
            outcome.results[contribution.name] = analysis.run(dump)
        except Exception as exc:  # likewise for analyses
            outcome.results["errors"][contribution.name] = describe(exc)
            outcome.failures.append(contribution.name)
        outcome.results["timings"][contribution.name] = time.perf_counter() - started
        if on_step:
            on_step(contribution.name)
    return outcome


def fit_and_score(scorer, dump: FeatureDump) -> dict[str, np.ndarray]:
    """Fit on ID train, score ID test and every OOD set; check each result is N finite floats."""
    scorer.fit(dump.train, dump.head)
    per_split = {}
    for split_name, split in [("test", dump.test)] + [
        (f"ood/{name}", split) for name, split in dump.ood.items()
    ]:
        values = np.asarray(scorer.score(split), dtype=np.float64)
        if values.shape != (len(split),):
            raise NcoodError(
                f"score() returned shape {values.shape} for split {split_name!r}, "
                f"expected ({len(split)},)"
            )
        bad = int(values.size - np.count_nonzero(np.isfinite(values)))
        if bad:
            raise NcoodError(f"score() returned {bad} non-finite values for split {split_name!r}")
        per_split[split_name] = values
    return per_split


def describe(exc: Exception) -> str:
    """A user error reads as its message; anything else also names the exception type."""
    return str(exc) if isinstance(exc, NcoodError) else f"{type(exc).__name__}: {exc}"


def analyse_file(
    features_path: Path,
    out_dir: Path | None,
    scorers: list[Contribution],
    analyses: list[Contribution],
    settings: dict[str, dict[str, str]] | None = None,
    *,
    on_step=None,
) -> AnalysisOutcome:
    """Analyse one features file; write results.json (and the scores) into ``out_dir``."""
    dump = load_features(features_path)
    outcome = analyse_dump(dump, scorers, analyses, settings, on_step=on_step)
    outcome.results["features"] = str(features_path)
    if "epoch" in dump.metadata:
        outcome.results["epoch"] = int(dump.metadata["epoch"])
    if out_dir is not None:
        write_json(out_dir / "results.json", outcome.results)
        save_scores(out_dir / "scores.safetensors", outcome.scores)
    return outcome
