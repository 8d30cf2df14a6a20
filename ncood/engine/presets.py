"""The named presets (the TP's two regimes, and their demos); the configuration they fill is
declared once in ncood/store/train_config.py."""

from __future__ import annotations

import dataclasses
from typing import Any

from ncood.errors import NcoodError
from ncood.host.registry import Registry
from ncood.store.train_config import TrainConfig

PRESETS: Registry[TrainConfig] = Registry("preset")


def register_preset(config: TrainConfig) -> TrainConfig:
    return PRESETS.add(config.preset, config)


def resolve_preset(name: str, *, config_class: type = TrainConfig, **overrides: Any) -> TrainConfig:
    """The named preset with ``None``-free overrides applied, then resolved.

    Changing the epochs re-derives the milestones (same fractions of training) and the
    checkpoint epochs unless those are given too; changing the period re-derives the latter.
    ``config_class`` may extend :class:`TrainConfig` with fields of its own (with defaults).
    """
    base = PRESETS.get(name)
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
    return dataclasses.replace(base, **changes).resolved()


def _scaled_milestones(base: TrainConfig, epochs: int) -> list[int]:
    """Explicit milestones keep their fraction of training when the epochs change."""
    if base.schedule != "multistep" or not base.milestones:
        return []
    return sorted({max(1, round(m / base.epochs * epochs)) for m in base.milestones})


# The embedded demo: digits in, photographs out; the TP's two regimes, shortened for a CPU.
register_preset(
    TrainConfig(
        preset="demo-standard",
        dataset="digits",
        ood=["photos", "noise"],
        epochs=12,
        schedule="cosine",
        batch_size=64,
        lr=0.05,
        width=8,
        checkpoint_every=2,
        stage_features=True,
    )
)
register_preset(
    TrainConfig(
        preset="demo-extended",
        dataset="digits",
        ood=["photos", "noise"],
        epochs=36,
        schedule="multistep",
        batch_size=64,
        lr=0.05,
        width=8,
        checkpoint_every=4,
        stage_features=True,
    )
)
# The TP: ResNet-18 on CIFAR-100 (SGD 0.1 / 0.9 / 5e-4, batch 128, crop 4 + flip), SVHN as OOD;
# checkpoints every 10 epochs and at the last, so Neural Collapse can be followed in time.
register_preset(
    TrainConfig(
        preset="tp-200",
        dataset="cifar100",
        ood=["svhn"],
        epochs=200,
        schedule="cosine",
        checkpoint_every=10,
    )
)
register_preset(
    TrainConfig(
        preset="tp-600",
        dataset="cifar100",
        ood=["svhn"],
        epochs=600,
        schedule="multistep",
        milestones=[300, 450],
        gamma=0.1,
        checkpoint_every=10,
    )
)
