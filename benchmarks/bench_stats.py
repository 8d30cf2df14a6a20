"""Speed of the bootstrap intervals and of DeLong's test at the TP's size, against baselines.

    .venv/bin/python benchmarks/bench_stats.py [--resamples 1000] [--baseline-resamples 10]
                                               [--delong-only]

The TP's size: 13 scorers, 10,000 ID test samples, 26,032 OOD samples (SVHN's test set).
Scores are synthetic, correlated across scorers (a shared part plus each scorer's noise), and
rounded to float32 as a scores file stores them (so there are ties).

1. Bootstrap: ncood's vectorised stratified bootstrap (1,000 resamples, the four metrics, every
   scorer), against the straightforward loop — draw indices, call scikit-learn through
   ``ncood.ood.conventions.ood_metrics`` per resample and scorer — timed on ``--baseline-resamples``
   resamples and scaled to the same number; the two agree on the resamples both compute.
2. DeLong: the 78 pairwise p-values of the 13 scorers with Sun & Xu's midrank algorithm,
   against the O(m·n) definition (every ID/OOD pair compared, in blocks), timed on two scorers
   and scaled to 13 (its cost is linear in the scorers); the components agree to 1e-10 and
   so does the p-value computed from the definition's components. Then the same 78 pairs at
   ImageNet-1K's size (50,000 ID, 50,000 OOD). ``--delong-only`` skips the bootstrap.

Wall-clock and CPU (user + sys) time are printed; other processes share the cores.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np

from ncood.ood.bootstrap import METRICS, _counts, id_resamples, ood_rng, resampled_metrics
from ncood.ood.conventions import ood_metrics
from ncood.ood.delong import pairwise_pvalues, structural_components

SCORERS, N_ID, N_OOD = 13, 10_000, 26_032


def synthetic_scores(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    shared_id, shared_ood = rng.normal(1.0, 1.0, N_ID), rng.normal(0.0, 1.0, N_OOD)
    x = shared_id + rng.normal(0, 0.6, (SCORERS, N_ID))
    y = shared_ood + rng.normal(0, 0.6, (SCORERS, N_OOD))
    return x.astype(np.float32).astype(np.float64), y.astype(np.float32).astype(np.float64)


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(function):
    wall, used = time.perf_counter(), cpu()
    result = function()
    return result, time.perf_counter() - wall, cpu() - used


def baseline_bootstrap(x, y, id_counts, ood_counts, resamples: int) -> np.ndarray:
    """Index arrays per resample (the same draws as ncood's), sklearn per resample and scorer."""
    out = np.empty((SCORERS, resamples, len(METRICS)))
    for b in range(resamples):
        i = np.repeat(np.arange(N_ID), id_counts[b])
        j = np.repeat(np.arange(N_OOD), ood_counts[b])
        for s in range(SCORERS):
            values = ood_metrics(x[s, i], y[s, j])
            out[s, b] = [values[m] for m in METRICS]
    return out


def baseline_components(x_row: np.ndarray, y_row: np.ndarray, block: int = 500):
    """V10 and V01 from every (ID, OOD) pair: ψ = 1 above, ½ tied, 0 below."""
    v10, v01 = np.empty(N_ID), np.zeros(N_OOD)
    for start in range(0, N_ID, block):
        rows = x_row[start : start + block, None]
        psi = (rows > y_row[None, :]) + 0.5 * (rows == y_row[None, :])
        v10[start : start + block] = psi.mean(axis=1)
        v01 += psi.sum(axis=0)
    return v10, v01 / N_ID


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--baseline-resamples", type=int, default=10)
    parser.add_argument("--delong-only", action="store_true", help="skip the bootstrap")
    args = parser.parse_args()
    x, y = synthetic_scores()
    names = [f"scorer{k}" for k in range(SCORERS)]
    print(
        f"{SCORERS} scorers, {N_ID:,} ID, {N_OOD:,} OOD; {os.cpu_count()} cores; "
        f"load average {os.getloadavg()[0]:.2f}"
    )

    def ncood_bootstrap():
        counts = id_resamples(0, args.resamples, N_ID)
        return resampled_metrics(
            dict(zip(names, x, strict=True)),
            dict(zip(names, y, strict=True)),
            resamples=args.resamples,
            seed=0,
            ood_name="svhn",
            id_counts=counts,
        )

    if not args.delong_only:
        bootstrap(args, x, y, names, ncood_bootstrap)
    delong(x, y)


def bootstrap(args, x, y, names, ncood_bootstrap) -> None:
    resampled, wall, used = timed(ncood_bootstrap)
    print(
        f"bootstrap, ncood: {args.resamples} resamples × 4 metrics × {SCORERS} scorers: "
        f"{wall:.2f} s wall, {used:.2f} s CPU"
    )
    id_counts = id_resamples(0, args.resamples, N_ID)
    ood_counts = _counts(ood_rng(0, "svhn"), args.resamples, N_OOD)
    slow, base_wall, base_used = timed(
        lambda: baseline_bootstrap(x, y, id_counts, ood_counts, args.baseline_resamples)
    )
    for s, name in enumerate(names):
        assert np.allclose(resampled[name][: args.baseline_resamples], slow[s], atol=1e-12)
    scale = args.resamples / args.baseline_resamples
    print(
        f"bootstrap, sklearn per resample: {args.baseline_resamples} resamples in "
        f"{base_wall:.2f} s wall → {base_wall * scale:.0f} s for {args.resamples} "
        f"(×{base_wall * scale / wall:.0f} ncood); the same values to 1e-12"
    )


def definition_p(v10: tuple[np.ndarray, np.ndarray], v01: tuple[np.ndarray, np.ndarray]) -> float:
    """DeLong's p of two scorers from their components: var(V10₁ − V10₂)/m + var(V01₁ − V01₂)/n."""
    from scipy.stats import norm

    d10, d01 = v10[0] - v10[1], v01[0] - v01[1]
    variance = np.var(d10, ddof=1) / d10.size + np.var(d01, ddof=1) / d01.size
    return float(2 * norm.sf(abs(d10.mean()) / np.sqrt(variance)))


def delong(x: np.ndarray, y: np.ndarray) -> None:
    (auroc, p), wall, used = timed(lambda: pairwise_pvalues(x, y))
    pairs = SCORERS * (SCORERS - 1) // 2
    print(
        f"DeLong, Sun & Xu: {pairs} pairs of {SCORERS} scorers: {wall:.3f} s wall, {used:.3f} s CPU"
    )
    check = 2
    (slow, base_wall, _) = timed(lambda: [baseline_components(x[s], y[s]) for s in range(check)])
    fast_auroc, fast_v10, fast_v01 = structural_components(x[:check], y[:check])
    for s, (v10, v01) in enumerate(slow):
        assert np.allclose(fast_v10[s], v10, atol=1e-10) and np.allclose(
            fast_v01[s], v01, atol=1e-10
        )
    reference = definition_p((slow[0][0], slow[1][0]), (slow[0][1], slow[1][1]))
    assert abs(p[0, 1] - reference) < 1e-10, (p[0, 1], reference)
    per_scorer = base_wall / check
    print(
        f"DeLong, every pair compared (O(m·n)): {per_scorer:.2f} s per scorer → "
        f"{per_scorer * SCORERS:.1f} s for {SCORERS} (×{per_scorer * SCORERS / wall:.0f} "
        f"ncood); components and p-value agree to 1e-10"
    )
    rng = np.random.default_rng(1)
    big_m = big_n = 50_000
    shared_id, shared_ood = rng.normal(1.0, 1.0, big_m), rng.normal(0.0, 1.0, big_n)
    big_x = shared_id + rng.normal(0, 0.6, (SCORERS, big_m))
    big_y = shared_ood + rng.normal(0, 0.6, (SCORERS, big_n))
    _, wall, used = timed(lambda: pairwise_pvalues(big_x, big_y))
    print(
        f"DeLong at ImageNet-1K's size ({big_m:,} ID, {big_n:,} OOD): {pairs} pairs: "
        f"{wall:.3f} s wall, {used:.3f} s CPU"
    )


if __name__ == "__main__":
    main()
