"""Training configurations and the named presets (the TP's two regimes, and their demos)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ncood.errors import NcoodError
from ncood.registry import Registry


@dataclass
class TrainConfig:
    """Every knob of a run; stored verbatim in the run's manifest."""

    preset: str
    dataset: str
    ood: list[str]
    epochs: int
    schedule: str  # "cosine" or "multistep"
    milestones: list[int] = field(default_factory=list)
    milestone_fractions: list[float] = field(default_factory=lambda: [0.5, 0.75])
    gamma: float = 0.1
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    width: int = 64
    crop_padding: int = 4
    flip: bool = True
    checkpoint_every: int = 10
    checkpoint_epochs: list[int] = field(default_factory=list)
    stage_features: bool = False
    seed: int = 0
    device: str = "auto"
    data_dir: str | None = None

    def resolved(self) -> TrainConfig:
        """Fill derived fields: multistep milestones and the checkpoint epochs."""
        config = dataclasses.replace(self)
        if config.epochs < 1:
            raise NcoodError(f"--epochs must be at least 1, got {config.epochs}")
        if config.schedule not in ("cosine", "multistep"):
            raise NcoodError(f"unknown schedule {config.schedule!r} (known: cosine, multistep)")
        if config.schedule == "multistep" and not config.milestones:
            config.milestones = sorted(
                {max(1, round(f * config.epochs)) for f in config.milestone_fractions}
            )
        if not config.checkpoint_epochs:
            every = max(1, config.checkpoint_every)
            config.checkpoint_epochs = sorted(
                set(range(every, config.epochs + 1, every)) | {config.epochs}
            )
        config.checkpoint_epochs = sorted(
            e for e in set(config.checkpoint_epochs) if 1 <= e <= config.epochs
        )
        return config

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


PRESETS: Registry[TrainConfig] = Registry("preset")


def register_preset(config: TrainConfig) -> TrainConfig:
    return PRESETS.add(config.preset, config)


def resolve_preset(name: str, **overrides: Any) -> TrainConfig:
    """The named preset with ``None``-free overrides applied, then resolved."""
    base = PRESETS.get(name)
    changes = {k: v for k, v in overrides.items() if v is not None}
    if "epochs" in changes and "milestones" not in changes:
        changes["milestones"] = []
        if "checkpoint_epochs" not in changes:
            changes["checkpoint_epochs"] = []
    return dataclasses.replace(base, **changes).resolved()


# The embedded demo: digits in, photographs out; the TP's two regimes, shortened for a CPU.
register_preset(
    TrainConfig(
        preset="demo-standard",
        dataset="digits",
        ood=["photos", "noise"],
        epochs=8,
        schedule="cosine",
        batch_size=64,
        lr=0.05,
        width=8,
        checkpoint_every=2,
    )
)
register_preset(
    TrainConfig(
        preset="demo-extended",
        dataset="digits",
        ood=["photos", "noise"],
        epochs=24,
        schedule="multistep",
        batch_size=64,
        lr=0.05,
        width=8,
        checkpoint_every=4,
    )
)
# The TP: ResNet-18 on CIFAR-100, SVHN as OOD.
register_preset(
    TrainConfig(preset="tp-200", dataset="cifar100", ood=["svhn"], epochs=200, schedule="cosine")
)
register_preset(
    TrainConfig(
        preset="tp-600",
        dataset="cifar100",
        ood=["svhn"],
        epochs=600,
        schedule="multistep",
        milestones=[300, 450],
    )
)
