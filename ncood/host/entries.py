"""What the ``register_datasets`` and ``register_presets`` hooks register, checked when a
plugin registers it (a wrong one breaks that plugin, not the command).

A dataset is a name with up to two roles: ``load(context)`` gives the in-distribution set
(``--dataset``), ``ood(context, ind)`` the set as OOD (``--ood``); ``cifar10`` has both. A
preset is a :class:`~ncood.store.train_config.TrainConfig` named by its ``preset`` field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ncood.store.train_config import TrainConfig


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    load: Callable[..., Any] | None = None  # (DataContext) -> InDistribution
    ood: Callable[..., Any] | None = None  # (DataContext, InDistribution) -> ImageSet
    description: str = ""
    plugin: str = ""

    def __post_init__(self) -> None:
        if self.load is None and self.ood is None:
            raise ValueError(f"dataset {self.name!r}: give load=, ood= or both")
        for role in ("load", "ood"):
            builder = getattr(self, role)
            if builder is not None and not callable(builder):
                raise ValueError(f"dataset {self.name!r}: {role}={builder!r} is not callable")


@dataclass(frozen=True)
class Preset:
    name: str
    config: TrainConfig
    description: str = ""
    plugin: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.config, TrainConfig):
            raise ValueError(f"preset {self.name!r}: {self.config!r} is not a TrainConfig")
        if self.config.preset != self.name:
            raise ValueError(f"preset {self.name!r}: its config names {self.config.preset!r}")
