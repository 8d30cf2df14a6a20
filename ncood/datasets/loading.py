"""From names to data: ``--dataset`` and ``--ood`` names (and ``folder:PATH``) checked, then
resolved through what the plugins register (``register_datasets``; the built-ins are
plugins/datasets/).

With ``files`` (``ncood extract``), sets on disk stay :class:`ImageFiles`, decoded at their own
resolution when the model runs, and ``folder:PATH`` may be the in-distribution set; without
(``ncood train``), every set is a 32-px in-memory :class:`ImageSet`. Under a benchmark
(``--benchmark openood:cifar100``, ncood.datasets.openood) the names it lists are its own files,
ahead of the registry: its ``cifar10`` is OpenOOD's list, not torchvision's archive.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ncood.datasets.base import (
    DataContext,
    ImageFiles,
    ImageSet,
    InBuilder,
    InDistribution,
    OodBuilder,
    channel_stats,
)
from ncood.datasets.files import folder_files, read_split_folders
from ncood.datasets.image_folder import load_folder, load_image_files
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


def check_names(
    dataset: str, ood: list[str], *, files: bool = False, benchmark: str | None = None
) -> None:
    """Unknown names are a one-line error before any data is read or any folder created."""
    _check_names(
        dataset, ood, in_distribution(), out_of_distribution(), files, _benchmark(benchmark)
    )


def _benchmark(name: str | None) -> Benchmark | None:
    return None if name is None else find_benchmark(name)


def _check_names(
    dataset: str,
    ood: list[str],
    ind: Registry,
    ood_sets: Registry,
    files: bool = False,
    bench: Benchmark | None = None,
) -> None:
    if bench is not None:
        if dataset != bench.dataset:
            raise NcoodError(
                f"{bench.name}'s in-distribution set is {bench.dataset}, not {dataset}"
            )
    elif folder_path(dataset) is None:
        ind.get(dataset)
    elif not files:
        raise NcoodError(
            f"--dataset {dataset}: a folder is read at its own resolution by `ncood extract`; "
            f"`ncood train` trains on the named 32-px sets"
        )
    elif not dataset[len(FOLDER_PREFIX) :]:
        raise NcoodError("folder: needs a path, e.g. --dataset folder:/data/imagenet")
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
    files: bool = False,
    benchmark: str | None = None,
) -> tuple[InDistribution, dict[str, ImageSet | ImageFiles]]:
    """The in-distribution set and the OOD sets, by name, from ``data_dir`` (or the default);
    ``files``: sets on disk stay there, and with ``benchmark`` the names it lists read its
    files (module docstring)."""
    in_builders, ood_builders = in_distribution(), out_of_distribution()
    bench = _benchmark(benchmark)
    _check_names(dataset, ood, in_builders, ood_builders, files, bench)
    root = Path(data_dir).expanduser() if data_dir else default_data_dir()
    context = DataContext(root, download, show_progress)
    folder = folder_path(dataset)
    if bench is not None:
        ind = benchmark_in_distribution(bench, root)
    elif folder is not None:
        ind = read_split_folders(folder, ood_name(dataset))
    else:
        ind = in_builders.get(dataset)(context)
    if not files:  # a benchmark's mean and std are its protocol's: kept
        ind = _in_memory_ind(ind, show_progress, own_stats=bench is None)
    sets: dict[str, ImageSet | ImageFiles] = {}
    for spec in ood:
        folder = folder_path(spec)
        if folder is not None and files:
            sets[ood_name(spec)] = folder_files(folder)
        elif folder is not None:
            sets[ood_name(spec)] = load_folder(folder, show_progress=show_progress)
        elif bench is not None and bench.ood_list(spec) is not None:
            built = benchmark_ood(bench, spec, root)
            sets[spec] = built if files else in_memory(built, show_progress)
        else:
            built = ood_builders.get(spec)(context, ind)
            sets[spec] = built if files else in_memory(built, show_progress)
    return ind, sets


def in_memory(images: ImageSet | ImageFiles, show_progress: bool = False) -> ImageSet:
    """A set on disk read whole at 32 px (what ``ncood train`` works on); others as they are."""
    if not isinstance(images, ImageFiles):
        return images
    loaded = load_image_files(images.paths, show_progress=show_progress)
    return ImageSet(loaded.images, images.labels.clone())


def _in_memory_ind(ind: InDistribution, show_progress: bool, own_stats: bool) -> InDistribution:
    if not isinstance(ind.train, ImageFiles) and not isinstance(ind.test, ImageFiles):
        return ind
    train, test = in_memory(ind.train, show_progress), in_memory(ind.test, show_progress)
    mean, std = channel_stats(train.images) if own_stats else (ind.mean, ind.std)
    return InDistribution(ind.name, train, test, ind.num_classes, mean, std)
