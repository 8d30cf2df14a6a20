"""Scorers that model where the ID train samples lie: NNGuide (an energy-scaled neighbour bank),
a class-conditional Gaussian mixture (GMM) and OpenMax (Weibull models of the distances to each
class's mean logit vector).

Each is fitted in streamed passes over the ID train split; what it keeps does not grow with the
scored splits (NNGuide's bank grows with the train split: ``bank_fraction`` bounds it, by
default OpenOOD's 1 % at ImageNet-1K size; GMM's C covariances are C·D² float64, which its
``memory_bytes`` tells the host, so a run that cannot hold them refuses it up front).
"""

from __future__ import annotations

import math

import numpy as np

import ncood
from ncood.errors import warn
from ncood.host.scoring import DumpShape, Fraction, check_seed
from ncood.maths.bank import bank_fraction, bank_rows, bank_size, kept_rows
from ncood.maths.stats import (
    cholesky,
    class_sums,
    logsumexp_rows,
    require_every_class,
    ridged,
    train_moments,
)
from ncood.store.chunked import fold_chunks, map_rows
from ncood.store.features import CHUNK_ROWS_MAX, Head, Split

BANK_BLOCK = 8192  # bank rows per similarity product: 2,048 queries × 8,192 float32 = 64 MiB
# gmm's ridge is relative to the mean variance: at r the log-normalizer (D/2 · log r) outweighs
# a sample's quadratic term (~D / r) by r · log r, so above 1e12 the scores keep a few digits
# at most, and past ~1e14 none (every score the same): docs/conventions.md.
MAX_GMM_RIDGE = 1e12


def normalized(features: np.ndarray) -> np.ndarray:
    values = np.asarray(features, np.float32)
    norms = np.linalg.norm(values, axis=1, keepdims=True)
    return values / np.maximum(norms, np.float32(1e-12))  # torch.nn.functional.normalize's ε


class NNGuide(ncood.Scorer):
    """NNGuide (Park et al., ICCV 2023): E(x) · mean of the k largest ⟨f̂(x), E(z) f̂(z)⟩ over a
    bank of ID train samples z, E the energy logsumexp(logits), f̂ = f/‖f‖."""

    def __init__(self, k: int = 100, bank_fraction: Fraction | None = None, seed: int = 0) -> None:
        if k < 1:
            raise ValueError(f"nnguide.k must be ≥ 1, got {k}")
        if bank_fraction is not None and not 0 < bank_fraction <= 1:
            raise ValueError(f"nnguide.bank_fraction must be in (0, 1], got {bank_fraction}")
        check_seed("nnguide.seed", seed)
        self.k, self.bank_fraction, self.seed = k, bank_fraction, seed

    def fit(self, train: Split, head: Head) -> None:
        n = len(train)
        fraction = bank_fraction(self.bank_fraction, n)
        size = bank_size(fraction, n, self.k)
        self.neighbours = min(self.k, size)
        if self.neighbours < self.k:  # a tiny dump: all of its train samples, said so
            warn(f"nnguide: k = {self.k} exceeds the {size} ID train samples; using k = {size}")
        keep = bank_rows(n, size, self.seed)  # a seeded random share of the bank, in file order
        bank = np.empty((size, train.features.shape[1]), np.float32)
        filled = 0
        for chunk in train.chunks(parts=("features", "logits")):
            rows = kept_rows(keep, chunk.start, chunk.stop)
            energy = logsumexp_rows(chunk.logits[rows]).astype(np.float32)
            block = normalized(chunk.features[rows]) * energy[:, None]
            bank[filled : filled + len(block)] = block
            filled += len(block)
        self.bank = bank
        self.resolved_params = {"bank_fraction": fraction, "bank_size": size, "k": self.neighbours}

    def memory_bytes(self, shape: DumpShape) -> int:
        """The float32 bank, and a chunk's similarities with its top-k (three copies)."""
        size = bank_size(bank_fraction(self.bank_fraction, shape.train), shape.train, self.k)
        block = min(size, BANK_BLOCK) + self.k
        return 4 * size * shape.dim + 3 * 4 * CHUNK_ROWS_MAX * block

    def score(self, split: Split) -> np.ndarray:
        def block(chunk) -> np.ndarray:
            queries = normalized(chunk.features)
            best = None
            for start in range(0, len(self.bank), BANK_BLOCK):
                similarity = queries @ self.bank[start : start + BANK_BLOCK].T
                if best is not None:
                    similarity = np.concatenate([best, similarity], axis=1)
                k = min(self.neighbours, similarity.shape[1])
                best = np.partition(similarity, similarity.shape[1] - k, axis=1)[:, -k:]
            guidance = best.astype(np.float64).mean(axis=1)
            return guidance * logsumexp_rows(chunk.logits)

        return map_rows(split, block, ("features", "logits"))


class GaussianMixture(ncood.Scorer):
    """log Σ_c π_c N(f | μ_c, Σ_c): one Gaussian per class, its own covariance, weights π_c the
    ID train class frequencies (the class-conditional GMM of pytorch-ood)."""

    def __init__(self, ridge: float = 1e-6) -> None:
        if not 0 <= ridge <= MAX_GMM_RIDGE:
            raise ValueError(
                f"gmm.ridge must be in [0, {MAX_GMM_RIDGE:g}], got {ridge:g} (a larger ridge "
                "swamps the covariance, and its log-determinant every sample's distance)"
            )
        self.ridge = ridge

    def memory_bytes(self, shape: DumpShape) -> int:
        """C covariances (then whitenings) of D² float64, a Cholesky factor and its inverse,
        and a chunk's float64 features, residuals and C log-likelihoods."""
        dim, classes = shape.dim, shape.classes
        chunk = 8 * CHUNK_ROWS_MAX * (3 * dim + classes)
        return 8 * classes * dim * dim + 3 * 8 * dim * dim + 8 * classes * dim + chunk

    def fit(self, train: Split, head: Head) -> None:
        num_classes = int(train.logits.shape[1])
        dim = int(train.features.shape[1])
        moments = train_moments(train, num_classes)
        require_every_class(moments.class_counts)
        means = moments.class_means
        scatter = np.zeros((num_classes, dim, dim))
        for chunk in train.chunks(parts=("features", "labels")):
            residual = chunk.features.astype(np.float64) - means[chunk.labels]
            order = np.argsort(chunk.labels, kind="stable")
            classes, starts = np.unique(chunk.labels[order], return_index=True)
            for c, rows in zip(classes, np.split(order, starts[1:]), strict=True):
                scatter[c] += residual[rows].T @ residual[rows]
        counts = moments.class_counts
        self.whiten = scatter  # reused in place: C×D² float64 once
        self.log_norm = np.empty(num_classes)
        from scipy.linalg import solve_triangular

        for c in range(num_classes):
            chol = cholesky(ridged(scatter[c] / counts[c], self.ridge), f"covariance of class {c}")
            self.whiten[c] = solve_triangular(chol, np.eye(dim), lower=True).T  # (L⁻¹)ᵀ
            log_det = 2.0 * np.log(np.diag(chol)).sum()
            self.log_norm[c] = math.log(counts[c] / counts.sum()) - 0.5 * (
                log_det + dim * math.log(2 * math.pi)
            )
        self.means = means

    def score(self, split: Split) -> np.ndarray:
        from scipy.linalg.blas import dtrmm

        def block(chunk) -> np.ndarray:
            features = chunk.features.astype(np.float64)
            log_likelihood = np.empty((len(features), len(self.means)))
            for c, (mean, whiten) in enumerate(zip(self.means, self.whiten, strict=True)):
                # yᵀ = L⁻¹ (f − μ_c)ᵀ: a triangular product (trmm), half a general one's flops;
                # the transposes are the same memory read in Fortran order, nothing copied.
                y = dtrmm(1.0, whiten.T, (features - mean).T, side=0, lower=1, overwrite_b=1)
                log_likelihood[:, c] = self.log_norm[c] - 0.5 * np.einsum("ij,ij->j", y, y)
            return logsumexp_rows(log_likelihood)

        return map_rows(split, block, ("features",))


TRANSLATION = 10_000.0  # libMR's shift of the distances before the Weibull fit (kept as is)
STEP_SHAPE = 1e300  # the Weibull of equal samples: a step at their value (shape → ∞)


def weibull_fit(x: np.ndarray, label: int) -> tuple[float, float]:
    """Maximum-likelihood Weibull (location 0) of positive samples: shape c and log scale.

    The same fit as libMR's and pytorch-ood's ``scipy.stats.exponweib.fit(x, floc=0, f0=1)``,
    solved exactly instead of by Nelder–Mead (0.2 s a class, and 4 s to import scipy.stats):
    c is the root of g(c) = Σ wᵢ ln xᵢ / Σ wᵢ − 1/c − mean(ln x), wᵢ = xᵢᶜ, increasing in c
    (g' = Var_w(ln x) + 1/c²), by Newton's method kept inside a bisection bracket; then
    scale = (mean xᶜ)^(1/c). Weights are taken relative to the largest x (c reaches
    thousands on libMR's shifted distances).
    """
    logs = np.log(np.asarray(x, np.float64))
    top, mean = logs.max(), logs.mean()
    spread = logs.std()
    if not spread > 0:  # one or two train samples: equal distances, the MLE's limit is a step
        return STEP_SHAPE, float(top)
    low, high = 0.0, np.inf
    shape = 1.2825 / spread  # the method-of-moments start: sd(ln x) = π / (c √6)
    for _ in range(200):
        weights = np.exp(shape * (logs - top))
        weights /= weights.sum()
        centred = logs @ weights
        value = centred - 1.0 / shape - mean
        low, high = (shape, high) if value < 0 else (low, shape)
        slope = weights @ (logs - centred) ** 2 + 1.0 / shape**2
        step = shape - value / slope
        if not low < step < high:
            step = (low + high) / 2 if np.isfinite(high) else 2 * shape
        if abs(step - shape) <= 1e-14 * shape:
            shape = step
            break
        shape = step
    log_mean = np.log(np.mean(np.exp(shape * (logs - top))))
    return float(shape), float(top + log_mean / shape)


class OpenMax(ncood.Scorer):
    """OpenMax (Bendale & Boult, CVPR 2016): the logits of the α top classes are reduced by
    the Weibull CDF of their distance to that class's mean ID train logit vector, the removed
    mass becomes an "unknown" logit v₀; score = −log softmax(v₀, revised logits)₀."""

    def __init__(self, tailsize: int = 25, alpha: int = 10, euclid_weight: float = 1.0) -> None:
        if tailsize < 1:
            raise ValueError(f"openmax.tailsize must be ≥ 1, got {tailsize}")
        if alpha < 1:
            raise ValueError(f"openmax.alpha must be ≥ 1, got {alpha}")
        if not 0 <= euclid_weight <= 1:
            raise ValueError(f"openmax.euclid_weight must be in [0, 1], got {euclid_weight}")
        self.tailsize, self.alpha, self.euclid_weight = tailsize, alpha, euclid_weight

    def memory_bytes(self, shape: DumpShape) -> int:
        """Each train sample's distance to its class, their order and labels (float64 and
        int64), and a chunk's N×C distances and revised logits."""
        return 4 * 8 * shape.train + 4 * 8 * CHUNK_ROWS_MAX * shape.classes

    def fit(self, train: Split, head: Head) -> None:
        num_classes = int(train.logits.shape[1])
        counts = np.bincount(train.labels, minlength=num_classes)
        require_every_class(counts)
        (sums,) = fold_chunks(
            train,
            lambda chunk: (class_sums(chunk.logits, chunk.labels, num_classes),),
            ("logits", "labels"),
        )
        self.centres = sums / counts[:, None]
        self.centre_norms = np.linalg.norm(self.centres, axis=1)
        own = map_rows(
            train,
            lambda chunk: np.take_along_axis(
                self.distances(chunk.logits), chunk.labels[:, None], axis=1
            )[:, 0],
            ("logits", "labels"),
        )
        order = np.lexsort((own, train.labels))
        ends = np.cumsum(counts)
        self.shift, self.shape, self.log_scale = (np.empty(num_classes) for _ in range(3))
        for c in range(num_classes):
            tail = own[order[max(ends[c] - self.tailsize, ends[c] - counts[c]) : ends[c]]]
            self.shift[c] = TRANSLATION - tail.min()
            self.shape[c], self.log_scale[c] = weibull_fit(tail + self.shift[c], c)
        self.top = min(self.alpha, num_classes)
        short = np.flatnonzero(counts < self.tailsize)
        used = int(min(self.tailsize, counts.max()))
        if short.size:  # a class's tail is at most all of its samples: said, and recorded
            warn(
                f"openmax: tailsize = {self.tailsize} exceeds the ID train samples of "
                f"{short.size} class(es) (fewest {counts.min()}), which use all of theirs; "
                f"tailsize = {used} recorded"
            )
        self.resolved_params = {"alpha": self.top, "tailsize": used}

    def distances(self, logits: np.ndarray) -> np.ndarray:
        """N×C: euclid_weight · ‖x − μ_c‖ + (1 − euclid_weight) · (1 − cos(x, μ_c))."""
        x = np.asarray(logits, np.float64)
        squared = np.einsum("ij,ij->i", x, x)
        out = np.zeros((len(x), len(self.centres)))
        dots = x @ self.centres.T
        if self.euclid_weight > 0:
            euclid = squared[:, None] - 2 * dots + (self.centre_norms**2)[None, :]
            out += self.euclid_weight * np.sqrt(np.clip(euclid, 0.0, None))
        if self.euclid_weight < 1:
            norms = np.sqrt(squared)[:, None] * self.centre_norms[None, :]
            cosine = 1.0 - np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
            out += (1.0 - self.euclid_weight) * cosine
        return out

    def score(self, split: Split) -> np.ndarray:
        ranked = (self.top + 1 - np.arange(1, self.top + 1)) / self.top

        def block(chunk) -> np.ndarray:
            x = chunk.logits.astype(np.float64)
            top = np.argsort(-x, axis=1, kind="stable")[:, : self.top]
            distance = np.take_along_axis(self.distances(x), top, axis=1)
            log_ratio = np.log(distance + self.shift[top]) - self.log_scale[top]
            with np.errstate(over="ignore"):  # a step Weibull's exponent overflows to 1 − 0
                outlier = -np.expm1(-np.exp(self.shape[top] * log_ratio))  # the Weibull CDF
            reduction = outlier * ranked[None, :]
            top_logits = np.take_along_axis(x, top, axis=1)
            unknown = np.sum(top_logits * reduction, axis=1)
            revised = x.copy()
            np.put_along_axis(revised, top, top_logits * (1.0 - reduction), axis=1)
            return logsumexp_rows(np.concatenate([unknown[:, None], revised], axis=1)) - unknown

        return map_rows(split, block, ("logits",))


@ncood.hookimpl
def register_scorers(register):
    register(
        "nnguide",
        NNGuide,
        "energy × mean similarity to the k nearest energy-scaled ID train features",
        title="NNGuide",
        family="feature",
    )
    register(
        "gmm",
        GaussianMixture,
        "log-likelihood under one Gaussian per class, each with its own covariance",
        title="GMM",
        family="feature",
    )
    register(
        "openmax",
        OpenMax,
        "−log of the OpenMax probability of the unknown class (Weibull fit on ID train)",
        title="OpenMax",
        family="feature",
    )
