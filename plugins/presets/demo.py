"""The embedded demo's presets: digits in, photographs and noise out; the TP's two regimes
(cosine, multistep), shortened for a CPU; ``demo-standard-etf`` and ``demo-standard-logitnorm``
pair with demo-standard as tp-200-etf and tp-200-logitnorm pair with tp-200."""

from __future__ import annotations

import dataclasses

import ncood
from ncood.store.train_config import TrainConfig


@ncood.hookimpl
def register_presets(register):
    standard = TrainConfig(
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
    register(standard, "the demo, cosine schedule (make demo)")
    register(
        dataclasses.replace(standard, preset="demo-standard-etf", head="etf"),
        "demo-standard with the head fixed to a simplex ETF",
    )
    register(
        dataclasses.replace(standard, preset="demo-standard-logitnorm", loss="logitnorm"),
        "demo-standard trained with LogitNorm (tau 0.04)",
    )
    register(
        dataclasses.replace(
            standard, preset="demo-extended", epochs=36, schedule="multistep", checkpoint_every=4
        ),
        "the demo, three times longer, multistep schedule",
    )
