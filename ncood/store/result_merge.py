"""results.json and its scores file of an epoch: merged per plugin, switched as one unit.

A new ``ncood analyze --plugins vim`` replaces ``vim``'s entries and keeps everyone else's; a
plugin that fails keeps its previous good result (its error is recorded beside it) unless
``--discard-failed`` is given. Every write makes a new scores file, ``scores-<id>.safetensors``,
holding the scores of every scorer whose results stand; results.json names it and is renamed in
last, so that one rename switches both: a kill or a failure (a full disk) at any instant leaves
the old pair or the new one, never a mix. Scores files no results.json names any more are
removed after the switch.

A scorer results.json lists without its scores (the scores file lost, damaged, of another
write, or of other features) is never half kept: the next write drops its results with a
one-line note naming it, and recomputes it when it is among the plugins run.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ncood.errors import NcoodError, note
from ncood.store.atomic import atomic_path, clean_stale, folder_lock, fsync_folder
from ncood.store.plugin_output import RESERVED_KEYS
from ncood.store.scores_file import (
    is_scores_file,
    load_scores_beside,
    save_scores,
    scores_name,
    scores_path,
    unscored,
)

RESULTS = "results.json"
_GROUPS = ("params", "timings", "errors")
RUN_LEVEL = ("significance", "ood_groups", "tuning")


@dataclass
class Previous:
    """An epoch's results and scores as they stand, and the scorers listed without scores."""

    results: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)  # listed in results, their scores missing
    why: str = ""  # why they are missing


def read_previous(out_dir: Path) -> Previous:
    """The epoch's results and scores; an unreadable results.json counts as none, and a
    scores file that is unreadable, missing or not the one results.json names loses its
    scorers (``lost``), as does a scorer it holds no scores for."""
    try:
        results = json.loads((out_dir / RESULTS).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return Previous()
    if not isinstance(results, dict):
        return Previous()
    why = "the scores file holds none for them"
    try:
        scores = load_scores_beside(out_dir, results)
    except NcoodError as exc:
        scores, why = {}, str(exc)
    lost = unscored(results, scores)
    ood = results.get("ood") if isinstance(results.get("ood"), dict) else {}
    listed = {s for per in ood.values() if isinstance(per, dict) for s in per}
    kept = {k: v for k, v in scores.items() if k in listed and k not in lost}
    return Previous(results, kept, lost, why)


def drop(results: dict[str, Any], name: str) -> None:
    """Remove every entry of plugin ``name`` from ``results`` (its metrics, parameters,
    timing, error and, for an analysis, its own results)."""
    for per_scorer in results.get("ood", {}).values():
        per_scorer.pop(name, None)
    if name not in RESERVED_KEYS:
        results.pop(name, None)
    for group in _GROUPS:
        if isinstance(results.get(group), dict):
            results[group].pop(name, None)


def _copied(previous: dict[str, Any]) -> dict[str, Any]:
    """``previous`` with its groups copied one level down, so that merging leaves it as is."""
    merged = dict(previous)
    for group in ("ood", *_GROUPS):
        kept = previous.get(group)
        merged[group] = dict(kept) if isinstance(kept, dict) else {}
    merged["ood"] = {k: dict(v) for k, v in merged["ood"].items() if isinstance(v, dict)}
    return merged


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
    merged = _copied(previous)
    ran = set(new["timings"]) | set(new["errors"]) | set(new["params"])
    kept_names, replaced = [], set()
    for name in sorted(ran):
        if name in failures and not discard_failed and _has_result(previous, name):
            kept_names.append(name)
            merged["errors"][name] = new["errors"][name]
            merged["timings"][name] = new["timings"].get(name)
            continue
        replaced.add(name)
        drop(merged, name)
        for group in _GROUPS:
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
    recomputes, before the write, what depends on every scorer kept (intervals, p-values).
    Writers of one folder take turns (a lock on it), so two analyses never lose each other's
    results or scores files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with folder_lock(out_dir):
        clean_stale(out_dir)
        previous = read_previous(out_dir)
        kept_results = _copied(previous.results)
        for name in previous.lost:
            drop(kept_results, name)
        merged, kept, replaced = merge(kept_results, new, failures, discard_failed)
        scores, other_features = _scores_kept(previous.scores, new_scores, replaced)
        for name in other_features:
            drop(merged, name)
        _note_dropped(out_dir, [n for n in previous.lost if n not in scores], previous.why)
        _note_dropped(out_dir, other_features, "they score other features than this run")
        if refresh is not None:
            refresh(merged, scores)
        _write_pair(out_dir, merged, scores)
    return merged, kept


def _scores_kept(
    previous: dict[str, dict[str, np.ndarray]],
    new: dict[str, dict[str, np.ndarray]],
    replaced: set[str],
) -> tuple[dict[str, dict[str, np.ndarray]], list[str]]:
    """The scores of every scorer whose results stand, and the earlier scorers left out
    because their splits have other lengths than this run's (scores of other features)."""
    scores = {k: v for k, v in previous.items() if k not in replaced}
    scores.update(new)
    samples: dict[str, int] = {}
    other_features = []
    for name in sorted(new) + sorted(set(scores) - set(new)):
        lengths = {split: len(values) for split, values in scores[name].items()}
        if any(samples.get(split, n) != n for split, n in lengths.items()):
            scores.pop(name)
            other_features.append(name)
            continue
        samples.update(lengths)
    return scores, other_features


def _note_dropped(out_dir: Path, names: list[str], why: str) -> None:
    if names:
        listed = ",".join(names)
        note(
            f"{out_dir}: the scores of {', '.join(names)} are lost ({why}); their results are "
            f"dropped so that none stands without its scores: `ncood analyze` with "
            f"`--plugins {listed}` recomputes them"
        )


def _write_pair(
    out_dir: Path, merged: dict[str, Any], scores: dict[str, dict[str, np.ndarray]]
) -> None:
    """A new scores file, then results.json naming it (the one rename that switches the
    pair), then the scores files nothing names any more are removed."""
    samples = {split: len(v) for per_split in scores.values() for split, v in per_split.items()}
    file_id = uuid.uuid4().hex
    name = scores_name(file_id)
    merged["scores_file"] = {"id": file_id, "name": name, "samples": samples}
    text = json.dumps(merged, indent=2, allow_nan=False) + "\n"
    save_scores(out_dir / name, scores, file_id)
    try:
        fsync_folder(out_dir)  # the scores file is in place before results.json names it
        with atomic_path(out_dir / RESULTS) as results_tmp:
            results_tmp.write_text(text, encoding="utf-8")
    except BaseException:
        if _named(out_dir) != name:  # results.json still names the old file
            (out_dir / name).unlink(missing_ok=True)
        raise
    fsync_folder(out_dir)
    remove_unnamed_scores(out_dir, scores_path(out_dir, merged))


def _named(out_dir: Path) -> object:
    """The scores file name results.json records (None when unreadable)."""
    try:
        return json.loads((out_dir / RESULTS).read_text(encoding="utf-8"))["scores_file"]["name"]
    except (OSError, ValueError, RecursionError, TypeError, KeyError):
        return None


def remove_unnamed_scores(out_dir: Path, named: Path) -> list[Path]:
    """Remove the scores files of ``out_dir`` other than ``named`` (the one results.json
    names): those of earlier writes, and those a killed writer made before its switch."""
    removed = []
    for entry in sorted(out_dir.iterdir()):
        if entry != named and is_scores_file(entry.name) and entry.is_file():
            try:
                entry.unlink()
            except OSError:
                continue  # not ours to remove: it stays, and is never read
            removed.append(entry)
    return removed
