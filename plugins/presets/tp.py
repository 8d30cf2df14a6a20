"""The TP's two regimes: ResNet-18 on CIFAR-100 (SGD 0.1 / 0.9 / 5e-4, batch 128, crop 4 +
flip), SVHN as OOD; checkpoints every 10 epochs and at the last, so Neural Collapse can be
followed in time. ``tp-200-etf`` and ``tp-200-logitnorm`` are tp-200 with collapse forced (a
fixed simplex-ETF head) or relaxed (LogitNorm, τ = 0.04): with tp-200, one comparison."""

from __future__ import annotations

import dataclasses

import ncood
from ncood.store.train_config import TrainConfig


@ncood.hookimpl
def register_presets(register):
    standard = TrainConfig(
        preset="tp-200",
        dataset="cifar100",
        ood=["svhn"],
        epochs=200,
        schedule="cosine",
        checkpoint_every=10,
    )
    register(standard, "the TP's standard regime: 200 epochs, cosine")
    register(
        dataclasses.replace(standard, preset="tp-200-etf", head="etf"),
        "tp-200 with the head fixed to a simplex ETF (collapse forced)",
    )
    register(
        dataclasses.replace(standard, preset="tp-200-logitnorm", loss="logitnorm"),
        "tp-200 trained with LogitNorm, tau 0.04 (Wei et al. 2022)",
    )
    register(
        dataclasses.replace(
            standard,
            preset="tp-600",
            epochs=600,
            schedule="multistep",
            milestones=[300, 450],
            gamma=0.1,
        ),
        "the TP's extended regime: 600 epochs, ×0.1 at 300 and 450",
    )
