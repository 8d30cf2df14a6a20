"""The scores file: per-sample scores ``ncood analyze`` keeps beside results.json.

``analysis/epoch-NNNN/scores.safetensors`` holds one float32 vector per scorer and split, keyed
``<scorer>/test`` and ``<scorer>/ood/<set>`` (metadata ``format = ncood-scores``), so the report
draws ROC curves and histograms without refitting. See docs/run-format.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ncood.atomic import atomic_path
from ncood.errors import NcoodError

FORMAT_NAME = "ncood-scores"


def save_scores(path: Path, scores: dict[str, dict[str, np.ndarray]]) -> None:
    """Per-sample scores, so the report can draw ROC curves and histograms without refitting."""
    from safetensors.numpy import save_file

    tensors = {
        f"{scorer}/{split}": values.astype(np.float32)
        for scorer, per_split in scores.items()
        for split, values in per_split.items()
    }
    if not tensors:
        return
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT_NAME})


def load_scores(path: Path) -> dict[str, dict[str, np.ndarray]]:
    from safetensors.numpy import load_file

    if not path.is_file():
        return {}
    scores: dict[str, dict[str, np.ndarray]] = {}
    for key, values in load_file(str(path)).items():
        scorer, split = split_score_key(key)
        scores.setdefault(scorer, {})[split] = values
    return scores


def split_score_key(key: str) -> tuple[str, str]:
    """``"<scorer>/test"`` or ``"<scorer>/ood/<set>"``; a scorer's name may itself hold '/'."""
    if key.endswith("/test"):
        return key[: -len("/test")], "test"
    cut = key.rfind("/ood/")
    if cut < 0:
        raise NcoodError(f"unexpected key {key!r} in a scores file")
    return key[:cut], key[cut + 1 :]
