"""The scores file: per-sample scores ``ncood analyze`` keeps beside results.json.

``analysis/epoch-NNNN/scores.safetensors`` holds one float64 vector per scorer and split, keyed
``<scorer>/test`` and ``<scorer>/ood/<set>`` (metadata ``format = ncood-scores``,
``format_version = 2`` and ``id``), so the report draws ROC curves and histograms without
refitting. Scores are stored at the precision they were computed in: every statistic — of a
single run, of a partial rerun that recomputes intervals over the scorers it keeps, of the
report — is computed from these same values, so all agree to the last bit. Version 1 files
(before float64) held float32 copies; they are read, upcast, with a one-line note.

The two files are one unit: each write makes a new ``scores-<id>.safetensors`` that results.json
names (``scores_file.id`` and ``.name``, with the length of each split in ``scores_file.samples``),
so replacing results.json switches both at once (ncood.store.result_merge). A scores file that is
not the one its results were written with, or of the wrong length, is refused on read, and
:func:`unscored` names the scorers results.json lists without their scores. Folders written
before generations hold ``scores.safetensors``; it is read the same way. See docs/run-format.md.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open

from ncood.errors import NcoodError, note
from ncood.store.atomic import atomic_path
from ncood.store.tensor_header import check_dtypes

FORMAT_NAME = "ncood-scores"
FORMAT_VERSION = "2"  # 2: float64 scores; 1: float32 copies
LEGACY_NAME = "scores.safetensors"  # before generations: one file, rewritten in place
_GENERATION = re.compile(r"^scores-[0-9a-f]{32}\.safetensors$")


def scores_name(file_id: str) -> str:
    """The name of the scores file written with id ``file_id``."""
    return f"scores-{file_id}.safetensors"


def is_scores_file(name: str) -> bool:
    """Whether ``name`` is a scores file ncood writes (a generation, or the older fixed name)."""
    return name == LEGACY_NAME or _GENERATION.match(name) is not None


def _record(results: dict[str, Any] | None) -> dict[str, Any]:
    record = (results or {}).get("scores_file")
    return record if isinstance(record, dict) else {}


def scores_path(folder: Path, results: dict[str, Any] | None) -> Path:
    """The scores file beside ``results`` (its ``scores_file.name``; ``scores.safetensors`` for
    results written before generations). A name that is not ``scores-<its id>.safetensors`` is
    refused: results.json never makes ncood read another file."""
    name = _record(results).get("name")
    if name is None:
        return Path(folder) / LEGACY_NAME
    if name != scores_name(str(_record(results).get("id"))) or not is_scores_file(str(name)):
        raise NcoodError(
            f"{Path(folder) / 'results.json'} names {name!r} as its scores file, which is not "
            f"the name ncood gives it; run `ncood analyze` again"
        )
    return Path(folder) / name


def unscored(results: dict[str, Any], scores: dict[str, dict[str, np.ndarray]]) -> list[str]:
    """The scorers ``results`` gives metrics for whose per-sample scores are not all in
    ``scores`` (ID test, and each OOD set they were measured on), in the order listed."""
    missing: list[str] = []
    ood = results.get("ood") if isinstance(results.get("ood"), dict) else {}
    for ood_name, per_scorer in ood.items():
        for scorer in per_scorer if isinstance(per_scorer, dict) else {}:
            have = scores.get(scorer, {})
            if ("test" not in have or f"ood/{ood_name}" not in have) and scorer not in missing:
                missing.append(scorer)
    return missing


def score_metadata(file_id: str = "") -> dict[str, str]:
    metadata = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION}
    return {**metadata, "id": file_id} if file_id else metadata


def score_tensors(scores: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {
        f"{scorer}/{split}": np.ascontiguousarray(values, dtype=np.float64)
        for scorer, per_split in scores.items()
        for split, values in per_split.items()
    }


def save_scores(path: Path, scores: dict[str, dict[str, np.ndarray]], file_id: str = "") -> None:
    """Per-sample scores, so the report can draw ROC curves and histograms without refitting."""
    from safetensors.numpy import save_file

    with atomic_path(path) as tmp:
        save_file(score_tensors(scores), str(tmp), metadata=score_metadata(file_id))


def load_scores(
    path: Path, results: dict[str, Any] | None = None
) -> dict[str, dict[str, np.ndarray]]:
    """The scores beside ``results`` (when given, checked to be the file written with them)."""
    from safetensors.numpy import load_file

    record = _record(results)
    if not path.is_file():
        if record.get("samples"):
            raise NcoodError(f"{path} is missing (results.json beside it names one)")
        return {}
    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = dict(handle.metadata() or {})
        check_dtypes(path, lambda name: ("F32", "F64", "F16"))
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise NcoodError(f"{path} is not a readable safetensors file ({exc})") from None
    if metadata.get("format", FORMAT_NAME) != FORMAT_NAME:
        raise NcoodError(f"{path} is not an ncood scores file")
    if record.get("id") and metadata.get("id") != record["id"]:
        raise NcoodError(
            f"{path} is not the scores file results.json was written with (ids differ); "
            f"run `ncood analyze` again"
        )
    samples = record.get("samples") if isinstance(record.get("samples"), dict) else {}
    if any(values.dtype != np.float64 for values in tensors.values()):
        note(
            f"{path} holds float32 scores (written by an older ncood), read as they are; "
            f"`ncood analyze` again stores the float64 scores the statistics are meant from",
            once="float32-scores",
        )
    scores: dict[str, dict[str, np.ndarray]] = {}
    for key, values in tensors.items():
        scorer, split = split_score_key(key)
        expected = samples.get(split)
        if values.ndim != 1 or (expected is not None and values.shape != (expected,)):
            raise NcoodError(
                f"{path}: {key!r} has shape {tuple(values.shape)}, expected "
                f"({expected if expected is not None else 'N'},) as results.json records"
            )
        if not np.isfinite(values).all():
            raise NcoodError(f"{path}: {key!r} has non-finite scores")
        scores.setdefault(scorer, {})[split] = values.astype(np.float64, copy=False)
    return scores


def load_scores_beside(folder: Path, results: dict[str, Any]) -> dict[str, dict[str, np.ndarray]]:
    """The scores of the file ``results`` names in ``folder``, checked against them."""
    return load_scores(scores_path(folder, results), results)


def split_score_key(key: str) -> tuple[str, str]:
    """``"<scorer>/test"`` or ``"<scorer>/ood/<set>"``; a scorer's name may itself hold '/'."""
    if key.endswith("/test"):
        return key[: -len("/test")], "test"
    cut = key.rfind("/ood/")
    if cut < 0:
        raise NcoodError(f"unexpected key {key!r} in a scores file")
    return key[:cut], key[cut + 1 :]
