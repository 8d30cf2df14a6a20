"""results.json and scores.safetensors of an epoch: merged per plugin, written together.

A new ``ncood analyze --plugins vim`` replaces ``vim``'s entries and keeps everyone else's; a
plugin that fails keeps its previous good result (its error is recorded beside it) unless
``--discard-failed`` is given. The scores file is rewritten with every run, holding the
scores of every scorer whose results stand, under a fresh id that results.json records: the
two are written to temp files and renamed one after the other, so a failure (a full disk)
leaves both as they were.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ncood.errors import NcoodError
from ncood.store.atomic import atomic_path, clean_stale
from ncood.store.plugin_output import RESERVED_KEYS
from ncood.store.scores_file import load_scores, score_metadata, score_tensors

RESULTS, SCORES = "results.json", "scores.safetensors"
_GROUPS = ("params", "timings", "errors")
RUN_LEVEL = ("significance", "ood_groups", "tuning")


def read_previous(out_dir: Path) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """The epoch's results and scores as they stand; unreadable ones count as none."""
    try:
        previous = json.loads((out_dir / RESULTS).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}, {}
    if not isinstance(previous, dict):
        return {}, {}
    try:
        scores = load_scores(out_dir / SCORES, previous)
    except NcoodError:
        scores = {}
    return previous, scores


def _has_result(results: dict[str, Any], name: str) -> bool:
    ood = results.get("ood") if isinstance(results.get("ood"), dict) else {}
    in_ood = any(isinstance(per, dict) and name in per for per in ood.values())
    return in_ood or (name not in RESERVED_KEYS and name in results)


def merge(
    previous: dict[str, Any],
    new: dict[str, Any],
    failures: list[str],
    discard_failed: bool,
) -> tuple[dict[str, Any], list[str], set[str]]:
    """(merged results, failed plugins whose previous result is kept, plugins replaced)."""
    merged = dict(previous)
    for group in ("ood", *_GROUPS):
        kept = previous.get(group)
        merged[group] = dict(kept) if isinstance(kept, dict) else {}
    merged["ood"] = {k: dict(v) for k, v in merged["ood"].items() if isinstance(v, dict)}
    ran = set(new["timings"]) | set(new["errors"]) | set(new["params"])
    kept_names, replaced = [], set()
    for name in sorted(ran):
        if name in failures and not discard_failed and _has_result(previous, name):
            kept_names.append(name)
            merged["errors"][name] = new["errors"][name]
            merged["timings"][name] = new["timings"].get(name)
            continue
        replaced.add(name)
        for per_scorer in merged["ood"].values():
            per_scorer.pop(name, None)
        if name not in RESERVED_KEYS:
            merged.pop(name, None)
        for group in _GROUPS:
            merged[group].pop(name, None)
            if name in new[group]:
                merged[group][name] = new[group][name]
        for ood_name, per_scorer in new["ood"].items():
            if name in per_scorer:
                merged["ood"].setdefault(ood_name, {})[name] = per_scorer[name]
        if name not in RESERVED_KEYS and name in new:
            merged[name] = new[name]
    for ood_name in new["ood"]:
        merged["ood"].setdefault(ood_name, {})
    for key in ("test", "features", "epoch"):
        if key in new:
            merged[key] = new[key]
    for key in RUN_LEVEL:  # they describe the scorers of the latest run as a whole
        if key in new:
            merged[key] = new[key]
        else:
            merged.pop(key, None)
    return merged, kept_names, replaced


def write_merged(
    out_dir: Path,
    new: dict[str, Any],
    new_scores: dict[str, dict[str, np.ndarray]],
    failures: list[str],
    discard_failed: bool = False,
    refresh: Callable[[dict[str, Any], dict[str, dict[str, np.ndarray]]], None] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Merge ``new`` into ``out_dir``'s results and scores and write both; returns the merged
    results and the failed plugins whose previous result was kept. ``refresh(merged, scores)``
    recomputes, before the write, what depends on every scorer kept (intervals, p-values)."""
    from safetensors.numpy import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    clean_stale(out_dir)
    previous, previous_scores = read_previous(out_dir)
    merged, kept, replaced = merge(previous, new, failures, discard_failed)
    scores = {k: v for k, v in previous_scores.items() if k not in replaced}
    scores.update(new_scores)
    samples: dict[str, int] = {}
    for name in sorted(new_scores) + sorted(set(scores) - set(new_scores)):
        lengths = {split: len(values) for split, values in scores[name].items()}
        if any(samples.get(split, n) != n for split, n in lengths.items()):
            scores.pop(name)  # an old scorer's scores of other features: not kept
            continue
        samples.update(lengths)
    if refresh is not None:
        refresh(merged, scores)
    file_id = uuid.uuid4().hex
    merged["scores_file"] = {"id": file_id, "samples": samples}
    text = json.dumps(merged, indent=2, allow_nan=False) + "\n"
    with atomic_path(out_dir / RESULTS) as results_tmp:
        results_tmp.write_text(text, encoding="utf-8")
        with atomic_path(out_dir / SCORES) as scores_tmp:
            save_file(score_tensors(scores), str(scores_tmp), metadata=score_metadata(file_id))
    return merged, kept
