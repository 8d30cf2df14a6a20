"""OpenOOD v1.5's OOD sets by name (``--ood tin,places365``), read from OpenOOD's image lists
under the data folder: ``tin``, ``places365``, ``ssb_hard``, ``ninco``, ``inaturalist``,
``textures``, ``openimage_o``. Each reads the list of the benchmark whose in-distribution set
the run uses (``benchmark_imglist/cifar100/test_tin.txt`` for CIFAR-100), the first benchmark
listing it otherwise. The tables and the reader are ncood.datasets.openood's; the benchmarks
themselves are ``--benchmark openood:ID``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import ncood

if TYPE_CHECKING:  # `ncood plugins` imports this module: no torch until a set is loaded
    from ncood.datasets import DataContext, ImageFiles, InDistribution


def _builder(name: str):
    def load(context: DataContext, ind: InDistribution) -> ImageFiles:
        from ncood.datasets.openood import named_ood

        return named_ood(name, context.root, ind.name)

    load.__doc__ = f"OpenOOD's {name!r} list, for the run's in-distribution set."
    return load


@ncood.hookimpl
def register_datasets(register):
    from ncood.datasets.openood import NAMED_SETS

    for name, description in NAMED_SETS.items():
        register(name, ood=_builder(name), description=description)
