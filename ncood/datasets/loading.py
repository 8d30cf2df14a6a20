"""From names to data: ``--dataset`` and ``--ood`` names (and ``folder:PATH``) checked, then
resolved through what the plugins register (``register_datasets``; the built-ins are
plugins/datasets/). Under a benchmark (``--benchmark openood:cifar100``, ncood.datasets.openood)
the names it lists are its own files, ahead of the registry: its ``cifar10`` is OpenOOD's list,
not torchvision's archive."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

from ncood.datasets.base import (
    DataContext,
    ImageFiles,
    ImageSet,
    InBuilder,
    InDistribution,
    OodBuilder,
)
from ncood.datasets.image_folder import load_folder, read_image_files
from ncood.datasets.openood import Benchmark, benchmark_in_distribution, benchmark_ood
from ncood.datasets.openood import benchmark as find_benchmark
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


def check_names(dataset: str, ood: list[str], benchmark: str | None = None) -> None:
    """Unknown names are a one-line error before any data is read or any folder created."""
    _check_names(dataset, ood, in_distribution(), out_of_distribution(), _benchmark(benchmark))


def _benchmark(name: str | None) -> Benchmark | None:
    return None if name is None else find_benchmark(name)


def _check_names(
    dataset: str, ood: list[str], ind: Registry, ood_sets: Registry, bench: Benchmark | None
) -> None:
    if bench is None:
        ind.get(dataset)
    elif dataset != bench.dataset:
        raise NcoodError(f"{bench.name}'s in-distribution set is {bench.dataset}, not {dataset}")
    seen: dict[str, str] = {}
    for spec in ood:
        if spec.startswith(FOLDER_PREFIX):
            if not spec[len(FOLDER_PREFIX) :]:
                raise NcoodError("folder: needs a path, e.g. --ood folder:/data/textures")
        elif bench is None or bench.ood_list(spec) is None:
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
    benchmark: str | None = None,
) -> tuple[InDistribution, dict[str, ImageSet | ImageFiles]]:
    """The in-distribution set and the OOD sets, by name, from ``data_dir`` (or the default);
    with ``benchmark``, the names it lists read its files."""
    in_builders, ood_builders = in_distribution(), out_of_distribution()
    bench = _benchmark(benchmark)
    _check_names(dataset, ood, in_builders, ood_builders, bench)
    root = Path(data_dir).expanduser() if data_dir else default_data_dir()
    context = DataContext(root, download, show_progress)
    if bench is not None:
        ind = benchmark_in_distribution(bench, root)
    else:
        ind = in_builders.get(dataset)(context)
    sets: dict[str, ImageSet | ImageFiles] = {}
    for spec in ood:
        folder = folder_path(spec)
        if folder is not None:
            sets[ood_name(spec)] = load_folder(folder, show_progress=show_progress)
        elif bench is not None and bench.ood_list(spec) is not None:
            sets[spec] = benchmark_ood(bench, spec, root)
        else:
            sets[spec] = ood_builders.get(spec)(context, ind)
    return ind, sets


def load_in_memory(
    dataset: str,
    ood: list[str],
    data_dir: str | Path | None,
    *,
    download: bool = True,
    show_progress: bool = False,
    benchmark: str | None = None,
) -> tuple[InDistribution, dict[str, ImageSet]]:
    """:func:`load_data` for ncood's own training (and the model-based scorers on its runs):
    every set left on disk is read into memory at 32 px, where the augmentation runs as
    batched tensor ops."""
    ind, sets = load_data(
        dataset,
        ood,
        data_dir,
        download=download,
        show_progress=show_progress,
        benchmark=benchmark,
    )
    if isinstance(ind.train, ImageFiles) or isinstance(ind.test, ImageFiles):
        ind = replace(
            ind,
            train=read_image_files(ind.train, show_progress=show_progress),
            test=read_image_files(ind.test, show_progress=show_progress),
            resize=None,
            crop=None,
        )
    return ind, {n: read_image_files(s, show_progress=show_progress) for n, s in sets.items()}
