"""All Neural Collapse metrics of one epoch at CIFAR-100 scale, against a straightforward baseline.

    .venv/bin/python benchmarks/bench_nc.py [--train 50000] [--dim 512] [--classes 100]

The data are synthetic float32 features shaped like a ResNet-18 dump on CIFAR-100 (50,000 train,
10,000 test, two OOD sets of 10,000). "ncood" is the ``nc`` analysis as ``ncood analyze`` runs it;
"baseline" is tests/nc_reference.py (per-class loops, full D×D Σ_W, eigh pseudo-inverse, explicit
NCC distances). Both start from the same arrays; the two results are checked to agree to 1e-4.
Target: ncood ≤ 3 s on the 2-core development VM.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from nc_reference import reference_from_dump  # noqa: E402

from ncood.store.features import FeatureDump, Head, Split  # noqa: E402
from ncood_plugins.analyses.neural_collapse import NeuralCollapse, NeuralCollapseLayers  # noqa: E402


def synthetic_dump(n_train: int, n_test: int, dim: int, classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = np.abs(rng.normal(0, 1, (classes, dim))) * 2
    weight = (centres - centres.mean(0) + rng.normal(0, 0.3, centres.shape)).astype(np.float32)
    bias = np.zeros(classes, np.float32)

    def split(n, ood_shift=None):
        if ood_shift is None:
            labels = rng.integers(0, classes, n)
            base = centres[labels]
        else:
            labels = np.full(n, -1)
            base = ood_shift
        features = np.abs(base + rng.normal(0, 1, (n, dim))).astype(np.float32)
        return Split(features, features @ weight.T + bias, labels)

    ood = {"svhn": split(n_test, 0.5), "dtd": split(n_test, 1.0)}
    return FeatureDump(split(n_train), split(n_test), ood, Head(weight, bias))


def timed(fn, repeat: int):
    best, value = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - started)
    return best, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=50_000)
    parser.add_argument("--test", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    dump = synthetic_dump(args.train, args.test, args.dim, args.classes)
    print(
        f"train {args.train}×{args.dim}, test {args.test}, {args.classes} classes, "
        f"2 OOD sets of {args.test}; {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} (the machine is shared)"
    )
    ours_s, ours = timed(lambda: NeuralCollapse().run(dump), args.repeat)
    base_s, base = timed(lambda: reference_from_dump(dump), 1)
    worst = max(abs(ours[k] - v) / max(abs(v), 1e-12) for k, v in base.items())
    print(f"ncood     {ours_s:7.3f} s   (best of {args.repeat})")
    print(f"baseline  {base_s:7.3f} s")
    print(f"speed-up  {base_s / ours_s:7.1f}×   largest relative difference {worst:.1e}")
    print(f"target ≤ 3 s: {'met' if ours_s <= 3 else 'NOT met'}")

    widths = (args.dim // 8, args.dim // 4, args.dim // 2, args.dim)  # ResNet-18's stages
    rng = np.random.default_rng(1)
    for split in (dump.train, dump.test):
        for i, width in enumerate(widths):
            split.layers[f"layer{i + 1}"] = np.abs(
                split.features[:, :width] + rng.normal(0, 1, (len(split), width)).astype(np.float32)
            )
    layers_s, _ = timed(lambda: NeuralCollapseLayers().run(dump), args.repeat)
    print(f"nc_layers {layers_s:7.3f} s   (stages of width {', '.join(map(str, widths))})")


if __name__ == "__main__":
    main()
