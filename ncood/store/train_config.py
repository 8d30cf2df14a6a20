"""A training run's configuration: every setting declared once, with its type, default, help
and bounds.

``TrainConfig`` is the one declaration. The options of ``ncood train`` (ncood/cli/train.py),
its ``--dry-run`` printout, the manifest's ``config`` (stored verbatim) and the schema a
manifest is checked against (:func:`config_schema`, used by ncood/store/run_schema.py) are all
derived from its fields (ncood/store/settings.py), so a new field appears in each without
another edit. It lives in the run format's layer because a manifest is read (and checked) by
commands that never train.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ncood.errors import NcoodError
from ncood.store.settings import check_bounds, config_fields, setting

PRECISIONS = ("auto", "fp32", "bf16")
HEADS = ("linear", "etf")
LOSSES = ("ce", "logitnorm")
SCHEDULES = ("cosine", "multistep")


@dataclass
class TrainConfig:
    """Every knob of a run; stored verbatim in the run's manifest.

    ``batch_size`` is the global batch: under torchrun each of N processes takes 1/N of it, so
    a run means the same recipe whatever the number of GPUs.
    """

    preset: str = setting(help="The named configuration this one starts from.", option=False)
    dataset: str = setting(
        help="In-distribution dataset: cifar100, cifar10, digits.", metavar="DATASET"
    )
    ood: list[str] = setting(
        help="OOD sets, comma-separated: svhn, cifar10, cifar100, mnist, fashionmnist, dtd, "
        "tin, places365, textures, photos, noise, folder:PATH.",
        metavar="SETS",
    )
    epochs: int = setting(help="Number of epochs.", metavar="N", minimum=1)
    schedule: str = setting(
        help="cosine or multistep.", metavar="cosine|multistep", choices=SCHEDULES
    )
    milestones: list[int] = setting(
        [], help="Multistep milestones, e.g. 300,450.", metavar="EPOCHS"
    )
    milestone_fractions: list[float] = setting(
        [0.5, 0.75], help="Multistep milestones as fractions of training.", option=False
    )
    gamma: float = setting(0.1, help="Multistep decay factor.", metavar="FACTOR", minimum=0)
    batch_size: int = setting(
        128, help="Global batch size (split across torchrun processes).", metavar="N", minimum=1
    )
    lr: float = setting(0.1, help="Initial learning rate.", metavar="LR", above=0)
    momentum: float = setting(0.9, help="SGD momentum.", metavar="MOMENTUM", minimum=0)
    weight_decay: float = setting(5e-4, help="SGD weight decay.", metavar="DECAY", minimum=0)
    width: int = setting(64, help="ResNet base width (64 = standard).", metavar="N", minimum=1)
    head: str = setting(
        "linear",
        help="Classifier head: linear (learned) or etf (fixed to a simplex ETF).",
        metavar="linear|etf",
        choices=HEADS,
    )
    loss: str = setting(
        "ce", help="Training loss: ce or logitnorm.", metavar="ce|logitnorm", choices=LOSSES
    )
    logitnorm_tau: float = setting(
        0.04, help="LogitNorm temperature (Wei et al. 2022).", metavar="TAU", above=0
    )
    etf_projector: int = setting(
        0,
        help="Hidden width of a fixed ETF projector before the head (Harun et al. 2025: 2048; "
        "0 = none).",
        metavar="N",
        minimum=0,
    )
    entropy_reg: float = setting(
        0.0,
        help="Weight of the entropy regularization of the encoder's features (Harun et al. "
        "2025: 0.05; 0 = none).",
        metavar="WEIGHT",
        minimum=0,
    )
    crop_padding: int = setting(
        4, help="Random-crop padding in pixels (0 = no crop).", metavar="PIXELS", minimum=0
    )
    flip: bool = setting(True, help="Random horizontal flips.")
    checkpoint_every: int = setting(
        10, help="Checkpoint (and features) period in epochs.", metavar="N", minimum=1
    )
    checkpoint_epochs: list[int] = setting(
        [], help="Explicit checkpoint epochs, e.g. 1,5,10,200.", metavar="EPOCHS"
    )
    stage_features: bool = setting(False, help="Also dump the pooled output of each ResNet stage.")
    seed: int = setting(0, help="Random seed.", metavar="N")
    device: str = setting(
        "auto", help="auto, cpu, cuda, cuda:1 …", metavar="DEVICE", on_resume=True
    )
    data_dir: str | None = setting(
        None,
        help="Where the datasets live (default $NCOOD_DATA_DIR or ./data).",
        metavar="DIR",
        on_resume=True,
    )
    benchmark: str | None = setting(
        None,
        help="OpenOOD v1.5's protocol, openood:cifar10 or openood:cifar100: its "
        "in-distribution and OOD sets, read from OpenOOD's lists under --data-dir "
        "(docs/benchmarks-openood.md).",
        metavar="openood:ID",
    )
    download: bool = setting(True, help="Download missing datasets when the network allows.")
    train_subset: int | None = setting(
        None, help="Train on a fixed random subset of this many images.", metavar="N", minimum=1
    )
    precision: str = setting(
        "auto",
        help="auto (bf16 autocast on GPUs with native bf16), fp32 or bf16.",
        metavar="auto|fp32|bf16",
        choices=PRECISIONS,
    )
    channels_last: bool | None = setting(None, help="channels_last layout (default: on for CUDA).")
    compile: bool = setting(False, help="torch.compile the model (static shapes: two graphs).")
    cuda_graphs: bool = setting(
        False, help="Compile with CUDA graphs (mode=reduce-overhead); implies --compile."
    )
    deterministic: bool = setting(
        False, help="Bitwise-reproducible CUDA training (deterministic kernels, slower)."
    )
    sync_batchnorm: bool = setting(
        True, help="Under torchrun, BatchNorm statistics over the global batch."
    )

    def resolved(self) -> TrainConfig:
        """Fill derived fields (multistep milestones, checkpoint epochs) and check the values."""
        config = dataclasses.replace(self, ood=list(self.ood))
        check_bounds(config)
        if not config.ood:
            raise NcoodError("give at least one OOD dataset (--ood)")
        if config.head == "etf" and config.etf_projector:
            raise NcoodError(
                "--head etf with --etf-projector: the projector's unit-norm output against the "
                "frame's unit rows bounds every logit to [-1, 1], where cross-entropy cannot "
                "train; Harun et al. learn the head after the projector (use --head linear)"
            )
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


_KINDS = {int: "int", float: "number", str: "text", bool: "bool"}


def config_schema(cls: type = TrainConfig) -> dict[str, Any]:
    """The manifest schema of a config (ncood/store/run_schema.py's vocabulary)."""
    schema: dict[str, Any] = {}
    for spec, element, is_list, optional in config_fields(cls):
        kind: Any = [_KINDS[element]] if is_list else _KINDS[element]
        schema[spec.name] = (kind, None) if optional else kind
    return schema
