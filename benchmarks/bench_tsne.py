"""t-SNE: ncood's openTSNE embedding against scikit-learn's TSNE on the same points.

    .venv/bin/python benchmarks/bench_tsne.py [--points 10000] [--threads 1]

The points are synthetic 512-d features of 100 classes (the size of CIFAR-100's test set),
reduced by PCA to 50 dimensions once; both methods embed the same 50-d points with perplexity 30
and their own default schedules (openTSNE: 250 exaggerated + 500 iterations, FFT gradients from
10,000 points; scikit-learn: 1,000 iterations, Barnes-Hut), on the same number of threads.
The final KL divergence of each shows that the faster one is not the worse one.
Target: ncood ≥ 2× faster.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits

from ncood_plugins.tsne import embed, pca


def kl_divergence(points: np.ndarray, embedding: np.ndarray, perplexity: float) -> float:
    """KL(P‖Q) with openTSNE's sparse P, so both embeddings are judged by one yardstick."""
    from openTSNE import TSNEEmbedding, affinity

    p = affinity.PerplexityBasedNN(points, perplexity=perplexity, random_state=0)
    return float(TSNEEmbedding(embedding.astype(np.float64), p).kl_divergence)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (100, 512)) * 2
    features = np.abs(
        centres[rng.integers(0, 100, args.points)] + rng.normal(0, 1, (args.points, 512))
    )
    points = pca(features, 50)
    print(f"{args.points} points, 512-d → PCA 50, perplexity 30, {args.threads} thread(s)")

    with threadpool_limits(args.threads):
        started = time.perf_counter()
        ours = embed(points, pca_dim=50, perplexity=30, seed=0, n_jobs=args.threads)
        ours_s = time.perf_counter() - started
        print(f"ncood (openTSNE)      {ours_s:7.1f} s", flush=True)
        started = time.perf_counter()
        theirs = TSNE(perplexity=30, init="pca", random_state=0, n_jobs=args.threads).fit_transform(
            points
        )
        theirs_s = time.perf_counter() - started
        print(f"scikit-learn TSNE     {theirs_s:7.1f} s", flush=True)
        kl_ours = kl_divergence(points, ours, 30)
        kl_theirs = kl_divergence(points, theirs, 30)
    print(f"speed-up              {theirs_s / ours_s:7.1f}×   (target ≥ 2×)")
    print(f"KL divergence         ncood {kl_ours:.3f}   scikit-learn {kl_theirs:.3f}")


if __name__ == "__main__":
    main()
