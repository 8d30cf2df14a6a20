"""The CIFAR-100-sized synthetic dump of the benchmarks, as plain arrays: no ncood import, so a
guard can build it and time plain code before ncood is imported (``bench_scorers.py`` wraps the
same arrays in a FeatureDump)."""

from __future__ import annotations

import numpy as np

TRAIN, TEST, OOD, CLASSES, DIM = 50_000, 10_000, 26_032, 100, 512


def synthetic_arrays(seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Post-ReLU features: class patterns plus strong noise; OOD: fresh patterns from the same
    distribution (unseen "classes"). The noise is tuned so the AUROCs look like the TP's.
    ``{"train" | "test" | "ood": {"features", "logits", "labels"}, "head": {"weight", "bias"}}``."""
    rng = np.random.default_rng(seed)
    means = np.maximum(rng.normal(0.4, 1.0, (CLASSES, DIM)), 0).astype(np.float32)
    weight = ((means - means.mean(axis=0)) * 0.25).astype(np.float32)
    bias = rng.normal(0, 0.1, CLASSES).astype(np.float32)

    def make(centres, labels):
        noise = rng.standard_normal(centres.shape, dtype=np.float32) * np.float32(3.0)
        features = np.maximum(centres + noise, 0, dtype=np.float32)
        return {"features": features, "logits": features @ weight.T + bias, "labels": labels}

    def in_distribution(n):
        labels = rng.integers(0, CLASSES, n)
        return make(means[labels], labels)

    ood_centres = np.maximum(rng.normal(0.4, 1.0, (OOD, DIM)), 0).astype(np.float32)
    return {
        "train": in_distribution(TRAIN),
        "test": in_distribution(TEST),
        "ood": make(ood_centres, np.full(OOD, -1)),
        "head": {"weight": weight, "bias": bias},
    }
