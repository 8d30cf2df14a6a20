"""Arrays an analysis keeps beside results.json, for the report to read instead of recomputing.

An analysis that sets ``self.arrays = {key: ndarray}`` in ``run()`` gets them written to
``analysis/epoch-NNNN/arrays/<analysis>.safetensors`` (float64, metadata ``format =
ncood-arrays``); the ``nc`` analysis keeps the class geometry its report figure draws.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ncood.store.atomic import atomic_path

FORMAT_NAME = "ncood-arrays"
FOLDER = "arrays"
_UNSAFE = re.compile(r"[^\w.-]")


def arrays_path(analysis_dir: Path, name: str) -> Path:
    """Where the arrays of analysis ``name`` live in an epoch's analysis folder."""
    return Path(analysis_dir) / FOLDER / f"{_UNSAFE.sub('_', name)}.safetensors"


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save_file

    tensors = {key: np.ascontiguousarray(value, np.float64) for key, value in arrays.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT_NAME})


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of one analysis; an absent file is an empty dict (an older analysis)."""
    from safetensors.numpy import load_file

    return load_file(str(path)) if Path(path).is_file() else {}
