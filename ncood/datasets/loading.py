"""From names to data: ``--dataset`` and ``--ood`` names (and ``folder:PATH``) checked, then
resolved through what the plugins register (``register_datasets``; the built-ins are
plugins/datasets/)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ncood.datasets.base import DataContext, ImageSet, InBuilder, InDistribution, OodBuilder
from ncood.datasets.image_folder import load_folder
from ncood.errors import NcoodError
from ncood.host.loading import host
from ncood.host.registry import Registry

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


def in_distribution() -> Registry[InBuilder]:
    """``--dataset`` names → builders, from every loaded plugin's ``register_datasets``."""
    return _role("load", "dataset")


def out_of_distribution() -> Registry[OodBuilder]:
    """``--ood`` names (``folder:PATH`` aside) → builders."""
    return _role("ood", "OOD dataset")


def _role(role: str, kind: str) -> Registry:
    builders: Registry = Registry(kind)
    for name, entry in host().datasets().items():
        if getattr(entry, role) is not None:
            builders.add(name, getattr(entry, role))
    return builders


def check_names(dataset: str, ood: list[str]) -> None:
    """Unknown names are a one-line error before any data is read or any folder created."""
    _check_names(dataset, ood, in_distribution(), out_of_distribution())


def _check_names(dataset: str, ood: list[str], ind: Registry, ood_sets: Registry) -> None:
    ind.get(dataset)
    seen: dict[str, str] = {}
    for spec in ood:
        if spec.startswith(FOLDER_PREFIX):
            if not spec[len(FOLDER_PREFIX) :]:
                raise NcoodError("folder: needs a path, e.g. --ood folder:/data/textures")
        else:
            ood_sets.get(spec)
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
    in_builders, ood_builders = in_distribution(), out_of_distribution()
    _check_names(dataset, ood, in_builders, ood_builders)
    root = Path(data_dir).expanduser() if data_dir else default_data_dir()
    context = DataContext(root, download, show_progress)
    ind = in_builders.get(dataset)(context)
    sets: dict[str, ImageSet] = {}
    for spec in ood:
        folder = folder_path(spec)
        if folder is not None:
            sets[ood_name(spec)] = load_folder(folder, show_progress=show_progress)
        else:
            sets[spec] = ood_builders.get(spec)(context, ind)
    return ind, sets
