"""The scores file: per-sample scores ``ncood analyze`` keeps beside results.json.

``analysis/epoch-NNNN/scores.safetensors`` holds one float64 vector per scorer and split, keyed
``<scorer>/test`` and ``<scorer>/ood/<set>`` (metadata ``format = ncood-scores``,
``format_version = 2`` and ``id``), so the report draws ROC curves and histograms without
refitting. Scores are stored at the precision they were computed in: every statistic — of a
single run, of a partial rerun that recomputes intervals over the scorers it keeps, of the
report — is computed from these same values, so all agree to the last bit. Version 1 files
(before float64) held float32 copies; they are read, upcast, with a one-line note.

The two files are written together and share an id (results.json's ``scores_file.id``, with
the length of each split in ``scores_file.samples``): a scores file that is not the one its
results were written with, or of the wrong length, is refused on read. See docs/run-format.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open

from ncood.errors import NcoodError, note
from ncood.store.atomic import atomic_path
from ncood.store.tensor_header import check_dtypes

FORMAT_NAME = "ncood-scores"
FORMAT_VERSION = "2"  # 2: float64 scores; 1: float32 copies


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

    record = (results or {}).get("scores_file")
    record = record if isinstance(record, dict) else {}
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


def split_score_key(key: str) -> tuple[str, str]:
    """``"<scorer>/test"`` or ``"<scorer>/ood/<set>"``; a scorer's name may itself hold '/'."""
    if key.endswith("/test"):
        return key[: -len("/test")], "test"
    cut = key.rfind("/ood/")
    if cut < 0:
        raise NcoodError(f"unexpected key {key!r} in a scores file")
    return key[:cut], key[cut + 1 :]
