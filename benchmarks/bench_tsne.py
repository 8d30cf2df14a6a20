"""t-SNE: ncood's openTSNE embedding against scikit-learn's TSNE on the same points.

    .venv/bin/python benchmarks/bench_tsne.py [--points 10000] [--threads 1,2]

The points are synthetic 512-d features of 100 classes, as many as CIFAR-100's test set,
reduced by PCA to 50 dimensions once; both methods embed the same 50-d points with perplexity 30,
PCA initialisation and their own default schedules (openTSNE: 250 exaggerated + 500 iterations,
FFT gradients from 10,000 points; scikit-learn: 250 + 750 iterations, Barnes-Hut), on the same
number of threads (``threadpoolctl`` caps BLAS and OpenMP; openTSNE gets ``n_jobs``).
Both results are scored by one yardstick, the exact KL(P‖Q) with the same sparse P, so the
faster one is not allowed to be the worse one. Wall and CPU seconds are printed: the machine is
shared, and CPU seconds of a one-thread run are the least disturbed by other processes.
Target: ncood ≥ 2× faster.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits

from ncood.report.tsne import embed, pca


def exact_kl(affinities, embedding: np.ndarray, rows: int = 1000) -> float:
    """KL(P‖Q) of a 2-D embedding: P sparse (sums to 1), Q the Student-t similarities."""
    y = np.asarray(embedding, dtype=np.float64)
    sq = np.einsum("ij,ij->i", y, y)
    z = 0.0
    for start in range(0, len(y), rows):
        block = y[start : start + rows]
        d2 = sq[start : start + rows, None] + sq[None, :] - 2 * block @ y.T
        kernel = 1.0 / (1.0 + np.maximum(d2, 0.0))
        kernel[np.arange(len(block)), np.arange(start, start + len(block))] = 0.0
        z += kernel.sum()
    p = affinities.tocoo()
    d2 = np.sum((y[p.row] - y[p.col]) ** 2, axis=1)
    q = 1.0 / (1.0 + d2) / z
    return float(np.sum(p.data * np.log(p.data / q)))


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return value, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--threads", default="1,2")
    args = parser.parse_args()
    from openTSNE.affinity import PerplexityBasedNN

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (100, 512)) * 2
    labels = rng.integers(0, 100, args.points)
    features = np.abs(centres[labels] + rng.normal(0, 1, (args.points, 512)))
    points = pca(features, 50)
    reference = PerplexityBasedNN(points, perplexity=30, random_state=0).P
    load = os.getloadavg()[0]
    print(f"{args.points} points, 512-d → PCA 50, perplexity 30; load average {load:.1f}")
    for threads in (int(t) for t in args.threads.split(",")):
        with threadpool_limits(threads):
            ours, ours_wall, ours_cpu = timed(
                lambda threads=threads: embed(points, perplexity=30, seed=0, n_jobs=threads)
            )
            theirs, their_wall, their_cpu = timed(
                lambda threads=threads: TSNE(
                    perplexity=30, init="pca", random_state=0, n_jobs=threads
                ).fit_transform(points)
            )
        print(f"-- {threads} thread(s)")
        print(f"ncood (openTSNE)    wall {ours_wall:6.1f} s   cpu {ours_cpu:6.1f} s", end="")
        print(f"   KL {exact_kl(reference, ours):.3f}")
        print(f"scikit-learn TSNE   wall {their_wall:6.1f} s   cpu {their_cpu:6.1f} s", end="")
        print(f"   KL {exact_kl(reference, theirs):.3f}")
        print(
            f"speed-up            wall {their_wall / ours_wall:6.2f}×   "
            f"cpu {their_cpu / ours_cpu:6.2f}×   (target ≥ 2×)",
            flush=True,
        )


if __name__ == "__main__":
    main()
