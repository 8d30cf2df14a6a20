"""The embedded demo's presets: digits in, photographs and noise out; the TP's two regimes
(cosine, multistep), shortened for a CPU."""

from __future__ import annotations

import ncood
from ncood.store.train_config import TrainConfig


@ncood.hookimpl
def register_presets(register):
    register(
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
        ),
        "the demo, cosine schedule (make demo)",
    )
    register(
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
        ),
        "the demo, three times longer, multistep schedule",
    )
