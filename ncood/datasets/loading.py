"""From names to data: ``--dataset`` and ``--ood`` names (and ``folder:PATH``) checked, then
resolved through the registries that the builder modules fill when imported."""

from __future__ import annotations

import os
import re
from pathlib import Path

# Importing the builder modules registers their names (torchvision itself loads lazily).
import ncood.datasets.embedded  # noqa: F401
import ncood.datasets.torchvision_sets  # noqa: F401
from ncood.datasets.base import (
    IN_DISTRIBUTION,
    OUT_OF_DISTRIBUTION,
    DataContext,
    ImageSet,
    InDistribution,
)
from ncood.datasets.image_folder import load_folder
from ncood.errors import NcoodError

FOLDER_PREFIX = "folder:"


def default_data_dir() -> Path:
    return Path(os.environ.get("NCOOD_DATA_DIR") or "data").expanduser()


def folder_path(spec: str) -> Path | None:
    """The folder of a ``folder:PATH`` OOD set; None for a named set (found under --data-dir)."""
    if not spec.startswith(FOLDER_PREFIX):
        return None
    return Path(spec[len(FOLDER_PREFIX) :]).expanduser()


def ood_name(spec: str) -> str:
    """The name an OOD set is stored under: itself, or a ``folder:PATH``'s base name."""
    folder = folder_path(spec)
    if folder is None:
        return spec
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", folder.resolve().name).strip("-.") or "folder"
    return base


def check_names(dataset: str, ood: list[str]) -> None:
    """Unknown names are a one-line error before any data is read or any folder created."""
    IN_DISTRIBUTION.get(dataset)
    seen: dict[str, str] = {}
    for spec in ood:
        if spec.startswith(FOLDER_PREFIX):
            if not spec[len(FOLDER_PREFIX) :]:
                raise NcoodError("folder: needs a path, e.g. --ood folder:/data/textures")
        else:
            OUT_OF_DISTRIBUTION.get(spec)
        name = ood_name(spec)
        if name in seen:
            raise NcoodError(f"OOD sets {seen[name]!r} and {spec!r} would both be named {name!r}")
        seen[name] = spec


def load_data(
    dataset: str,
    ood: list[str],
    data_dir: str | Path | None,
    *,
    download: bool = True,
    show_progress: bool = False,
) -> tuple[InDistribution, dict[str, ImageSet]]:
    """The in-distribution set and the OOD sets, by name, from ``data_dir`` (or the default)."""
    check_names(dataset, ood)
    root = Path(data_dir).expanduser() if data_dir else default_data_dir()
    context = DataContext(root, download, show_progress)
    ind = IN_DISTRIBUTION.get(dataset)(context)
    sets: dict[str, ImageSet] = {}
    for spec in ood:
        folder = folder_path(spec)
        if folder is not None:
            sets[ood_name(spec)] = load_folder(folder, show_progress=show_progress)
        else:
            sets[spec] = OUT_OF_DISTRIBUTION.get(spec)(context, ind)
    return ind, sets
