"""Named presets resolved into a run's configuration. Plugins register them
(``register_presets``; the TP's two regimes and their demos are plugins/presets/); the
configuration they fill is declared once in ncood/store/train_config.py."""

from __future__ import annotations

import dataclasses
from typing import Any

from ncood.errors import NcoodError
from ncood.host.entries import Preset
from ncood.host.loading import host
from ncood.host.registry import Registry
from ncood.store.train_config import TrainConfig


def preset_registry() -> Registry[Preset]:
    """Every preset the loaded plugins register."""
    return host().presets()


def resolve_preset(name: str, *, config_class: type = TrainConfig, **overrides: Any) -> TrainConfig:
    """The named preset with ``None``-free overrides applied, then resolved.

    Changing the epochs re-derives the milestones (same fractions of training) and the
    checkpoint epochs unless those are given too; changing the period re-derives the latter.
    ``config_class`` may extend :class:`TrainConfig` with fields of its own (with defaults).
    """
    base = preset_registry().get(name).config
    if type(base) is not config_class:
        base = config_class(**base.to_dict())
    changes = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(changes) - {f.name for f in dataclasses.fields(config_class)}
    if unknown:
        raise NcoodError(f"unknown configuration field(s): {', '.join(sorted(unknown))}")
    if "epochs" in changes:
        if "milestones" not in changes and changes["epochs"] != base.epochs:
            changes["milestones"] = _scaled_milestones(base, changes["epochs"])
        changes.setdefault("checkpoint_epochs", [])
    if "checkpoint_every" in changes:
        changes.setdefault("checkpoint_epochs", [])
    if "benchmark" in changes:
        from ncood.datasets.openood import benchmark_sets

        changes["dataset"], changes["ood"] = benchmark_sets(
            changes["benchmark"], changes.get("dataset"), changes.get("ood"), training=True
        )
    return dataclasses.replace(base, **changes).resolved()


def _scaled_milestones(base: TrainConfig, epochs: int) -> list[int]:
    """Explicit milestones keep their fraction of training when the epochs change."""
    if base.schedule != "multistep" or not base.milestones:
        return []
    return sorted({max(1, round(m / base.epochs * epochs)) for m in base.milestones})
