"""Small synthetic dumps and analyzed runs for the tests (no training needed).

Tests import them from here, never from conftest.py: pytest keeps one module named ``conftest``
at a time, so a subfolder's conftest.py hides the names of tests/conftest.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ncood.analyze.driver import analyze_file, select
from ncood.host.loading import host
from ncood.store.features import FeatureDump, Head, Split, save_features
from ncood.store.run import RunDir


def make_dump(
    num_classes: int = 4, dim: int = 8, per_class: int = 30, ood_count: int = 40, seed: int = 0
) -> FeatureDump:
    """Separated ID clusters on the axes, OOD near the origin, a head aligned with the means."""
    rng = np.random.default_rng(seed)
    means = np.zeros((num_classes, dim))
    means[np.arange(num_classes), np.arange(num_classes) % dim] = 6.0
    weight, bias = means.astype(np.float32), np.zeros(num_classes, np.float32)

    def split(n_per_class: int) -> Split:
        labels = np.repeat(np.arange(num_classes), n_per_class)
        features = (means[labels] + rng.normal(0, 0.5, (labels.size, dim))).astype(np.float32)
        return Split(features, features @ weight.T + bias, labels)

    ood_features = rng.normal(0, 0.5, (ood_count, dim)).astype(np.float32)
    ood = Split(ood_features, ood_features @ weight.T + bias, np.full(ood_count, -1))
    return FeatureDump(split(per_class), split(per_class // 2), {"blobs": ood}, Head(weight, bias))


def noisy_dump(num_classes=12, dim=32, seed=0, with_layers=False, spread=1.2) -> FeatureDump:
    """Overlapping float32 clusters (so NCC and the network disagree sometimes), unequal class
    sizes, a head that is the means plus noise, two OOD sets. ``spread`` sets the within-class
    noise: a smaller spread is a more collapsed network."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1.5, (num_classes, dim)) + 3.0
    weight = (centres - centres.mean(0) + rng.normal(0, 0.8, centres.shape)).astype(np.float32)
    bias = rng.normal(0, 0.5, num_classes).astype(np.float32)
    layer_maps = [rng.normal(size=(dim, width)) for width in (6, 24)]

    def split(n):
        labels = np.concatenate([np.arange(num_classes), rng.integers(0, num_classes, n)])
        noise = rng.normal(0, spread, (labels.size, dim))
        features = (centres[labels] + noise).astype(np.float32)
        return Split(features, features @ weight.T + bias, labels, stages(features))

    def stages(features):  # no random draw: the other arrays stay as they were
        if not with_layers:
            return {}
        return {
            f"layer{i + 1}": np.abs(features @ lm).astype(np.float32)
            for i, lm in enumerate(layer_maps)
        }

    def ood(n, shift):
        features = (rng.normal(0, 1.0, (n, dim)) + shift).astype(np.float32)
        return Split(features, features @ weight.T + bias, np.full(n, -1), stages(features))

    return FeatureDump(
        split(600), split(300), {"far": ood(80, 6.0), "near": ood(90, 3.0)}, Head(weight, bias)
    )


def analyzed_run(root: Path, spreads: dict[int, float], *, with_layers=True, classes=6) -> RunDir:
    """A run folder whose epochs are dumps of decreasing ``spread``, analyzed by ``nc``,
    ``nc_layers``, ``msp`` and ``energy`` exactly as ``ncood analyze`` does."""
    root.mkdir(parents=True)
    manifest = {
        "format": "ncood-run",
        "format_version": 1,
        "status": "complete",
        "config": {"preset": "synthetic", "epochs": max(spreads), "ood": ["near", "far"]},
        "dataset": {
            "name": "synthetic",
            "num_classes": classes,
            "train_size": 600 + classes,
            "test_size": 300 + classes,
            "ood": {"near": 90, "far": 80},
        },
        "files": {},
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    run = RunDir(root)
    scorers, analyses = select(host(), ["msp", "energy", "nc", "nc_layers"])
    for epoch, spread in spreads.items():
        dump = noisy_dump(classes, 16, seed=epoch, with_layers=with_layers, spread=spread)
        save_features(run.features(epoch), dump)
        analyze_file(run.features(epoch), run.analysis_dir(epoch), scorers, analyses)
    return run
