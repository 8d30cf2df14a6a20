"""Training configurations and the named presets (the TP's two regimes, and their demos)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ncood.errors import NcoodError
from ncood.host.registry import Registry

PRECISIONS = ("auto", "fp32", "bf16")
SCHEDULES = ("cosine", "multistep")


@dataclass
class TrainConfig:
    """Every knob of a run; stored verbatim in the run's manifest.

    ``batch_size`` is the global batch: under torchrun each of N processes takes 1/N of it, so
    a run means the same recipe whatever the number of GPUs.
    """

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
    download: bool = True  # fetch missing datasets when the network allows
    train_subset: int | None = None  # train on a fixed random subset of this many images
    precision: str = "auto"  # auto = bf16 autocast on GPUs with native bf16, fp32 elsewhere
    channels_last: bool | None = None  # None = on for CUDA
    compile: bool = False  # torch.compile the training step (static shapes: two graphs)
    cuda_graphs: bool = False  # compile with mode="reduce-overhead": each graph as a CUDA graph
    deterministic: bool = False  # CUDA: deterministic kernels instead of cudnn.benchmark
    sync_batchnorm: bool = True  # under torchrun: BatchNorm statistics over the global batch

    def resolved(self) -> TrainConfig:
        """Fill derived fields (multistep milestones, checkpoint epochs) and check the values."""
        config = dataclasses.replace(self, ood=list(self.ood))
        if config.epochs < 1:
            raise NcoodError(f"--epochs must be at least 1, got {config.epochs}")
        if config.schedule not in SCHEDULES:
            raise NcoodError(
                f"unknown schedule {config.schedule!r} (known: {', '.join(SCHEDULES)})"
            )
        if config.precision not in PRECISIONS:
            raise NcoodError(
                f"unknown precision {config.precision!r} (known: {', '.join(PRECISIONS)})"
            )
        for name in ("batch_size", "width", "checkpoint_every"):
            if getattr(config, name) < 1:
                raise NcoodError(f"--{name.replace('_', '-')} must be at least 1")
        if config.crop_padding < 0:
            raise NcoodError("--crop-padding must be 0 or more")
        if config.train_subset is not None and config.train_subset < 1:
            raise NcoodError("--train-subset must be at least 1")
        for name in ("lr", "momentum", "weight_decay", "gamma"):
            value = getattr(config, name)
            if not math.isfinite(value) or value < 0 or (name == "lr" and value == 0):
                raise NcoodError(f"--{name.replace('_', '-')} must be a finite positive number")
        if not config.ood:
            raise NcoodError("give at least one OOD dataset (--ood)")
        if config.schedule == "multistep":
            if not config.milestones:
                config.milestones = sorted(
                    {max(1, round(f * config.epochs)) for f in config.milestone_fractions}
                )
            bad = [m for m in config.milestones if not 1 <= m <= config.epochs]
            if bad:
                raise NcoodError(f"milestones {bad} lie outside epochs 1..{config.epochs}")
            config.milestones = sorted(set(config.milestones))
        if not config.checkpoint_epochs:
            every = config.checkpoint_every
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
        required = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        if not isinstance(data, Mapping) or any(name not in data for name in required):
            missing = [n for n in required if not isinstance(data, Mapping) or n not in data]
            raise NcoodError(f"the run's configuration lacks {', '.join(missing)}")
        return cls(**{k: v for k, v in data.items() if k in known})


PRESETS: Registry[TrainConfig] = Registry("preset")


def register_preset(config: TrainConfig) -> TrainConfig:
    return PRESETS.add(config.preset, config)


def resolve_preset(name: str, **overrides: Any) -> TrainConfig:
    """The named preset with ``None``-free overrides applied, then resolved.

    Changing the epochs re-derives the milestones (same fractions of training) and the
    checkpoint epochs unless those are given too; changing the period re-derives the latter.
    """
    base = PRESETS.get(name)
    changes = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(changes) - {f.name for f in dataclasses.fields(TrainConfig)}
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
