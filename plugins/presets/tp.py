"""The TP's two regimes: ResNet-18 on CIFAR-100 (SGD 0.1 / 0.9 / 5e-4, batch 128, crop 4 +
flip), SVHN as OOD; checkpoints every 10 epochs and at the last, so Neural Collapse can be
followed in time."""

from __future__ import annotations

import ncood
from ncood.store.train_config import TrainConfig


@ncood.hookimpl
def register_presets(register):
    register(
        TrainConfig(
            preset="tp-200",
            dataset="cifar100",
            ood=["svhn"],
            epochs=200,
            schedule="cosine",
            checkpoint_every=10,
        ),
        "the TP's standard regime: 200 epochs, cosine",
    )
    register(
        TrainConfig(
            preset="tp-600",
            dataset="cifar100",
            ood=["svhn"],
            epochs=600,
            schedule="multistep",
            milestones=[300, 450],
            gamma=0.1,
            checkpoint_every=10,
        ),
        "the TP's extended regime: 600 epochs, ×0.1 at 300 and 450",
    )
