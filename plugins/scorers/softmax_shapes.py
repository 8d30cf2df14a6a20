"""Scorers that read the shape of the softmax: entropy, KL matching, temperature scaling and the
weighted energy.

All four need only the logits (KL matching and temperature scaling fit on the ID train
logits), read chunk by chunk, in float64: a confident sample's entropy or KL divergence is a
difference of numbers close to each other, which float32 would round to ties.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import ncood
from ncood.errors import NcoodError, warn
from ncood.host.scoring import check_temperature
from ncood.maths.stats import class_sums, logsumexp_rows, predicted_classes
from ncood.store.chunked import fold_chunks, map_rows
from ncood.store.features import Head, Split

T_BOUNDS = (1e-2, 1e2)  # tscaling's fitted temperature stays in this range


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log p = (z − z_max) − log1p(Σ_{j ≠ argmax} e^{z_j − z_max}), in float64.

    The log1p keeps the top class's log p ≈ −Σ_{j≠top} p_j to full relative precision for a
    confident sample (z − logsumexp(z) would round it to a multiple of 1e-16), and with it the
    tiny entropies and divergences that rank confident samples.
    """
    values = np.asarray(logits, np.float64)
    top = np.argmax(values, axis=1)
    rows = np.arange(len(values))
    shifted = values - values[rows, top][:, None]
    others = np.exp(shifted)
    others[rows, top] = 0.0
    return shifted - np.log1p(others.sum(axis=1))[:, None]


def negative_entropy(log_probs: np.ndarray) -> np.ndarray:
    """Σ_c p_c log p_c, with 0 · log 0 = 0 (p underflows to 0 only where log p is −inf)."""
    probs = np.exp(log_probs)
    return np.sum(np.where(probs > 0, probs * log_probs, 0.0), axis=1)


class Entropy(ncood.Scorer):
    """Minus the Shannon entropy of the softmax: Σ_c p_c log p_c (higher = more confident)."""

    def fit(self, train: Split, head: Head) -> None:
        return None

    def score(self, split: Split) -> np.ndarray:
        return map_rows(
            split, lambda chunk: negative_entropy(log_softmax(chunk.logits)), ("logits",)
        )


class KLMatching(ncood.Scorer):
    """KL matching (Hendrycks et al., ICML 2022): −min_k KL(p ‖ d_k), d_k the mean softmax of the
    ID train samples the network predicts as k (no labels needed)."""

    def fit(self, train: Split, head: Head) -> None:
        num_classes = train.logits.shape[1]
        predictions = predicted_classes(train)

        def sums(chunk):
            probs = np.exp(log_softmax(chunk.logits))
            return (class_sums(probs, predictions[chunk.rows], num_classes),)

        (totals,) = fold_chunks(train, sums, ("logits",))
        counts = np.bincount(predictions, minlength=num_classes)
        predicted = np.flatnonzero(counts)
        typical = totals[predicted] / counts[predicted, None]
        # log 0 → the log of the smallest normal float64: finite, as every score must be.
        self.log_typical_t = np.ascontiguousarray(
            np.log(np.maximum(typical, np.finfo(np.float64).tiny)).T
        )
        self.resolved_params = {"fitted_classes": int(predicted.size)}

    def score(self, split: Split) -> np.ndarray:
        def block(chunk) -> np.ndarray:
            log_probs = log_softmax(chunk.logits)
            probs = np.exp(log_probs)
            kl = negative_entropy(log_probs)[:, None] - probs @ self.log_typical_t
            return -kl.min(axis=1)

        return map_rows(split, block, ("logits",))


def nll_and_derivatives(split: Split, beta: float) -> tuple[float, float, float]:
    """Mean NLL of softmax(β z) on the true labels, and its first two derivatives in β, in one
    streamed pass: NLL is convex in β (d²/dβ² = mean Var_p(z) ≥ 0), so Newton converges."""

    def block(chunk):
        z = np.asarray(chunk.logits, np.float64)
        log_probs = log_softmax(beta * z)
        probs = np.exp(log_probs)
        picked = np.arange(len(z)), chunk.labels
        mean_z = np.einsum("ij,ij->i", probs, z)
        second = np.einsum("ij,ij->i", probs, z * z)
        return (
            -log_probs[picked].sum(),
            (mean_z - z[picked]).sum(),
            (second - mean_z**2).sum(),
        )

    nll, grad, hess = fold_chunks(split, block, ("logits", "labels"))
    n = len(split)
    return float(nll) / n, float(grad) / n, float(hess) / n


def fit_temperature(train: Split, tolerance: float = 1e-10, max_steps: int = 50) -> float:
    """The T minimising the ID train NLL of softmax(z / T): damped Newton on β = 1/T."""
    low, high = 1.0 / T_BOUNDS[1], 1.0 / T_BOUNDS[0]
    beta = 1.0
    nll, grad, hess = nll_and_derivatives(train, beta)
    for _ in range(max_steps):
        step = -grad / hess if hess > 0 else -np.sign(grad) * beta
        candidate = float(np.clip(beta + step, low, high))
        while True:
            new = nll_and_derivatives(train, candidate)
            if new[0] <= nll + 1e-15 * abs(nll) or abs(candidate - beta) < 1e-12 * beta:
                break
            candidate = (beta + candidate) / 2
        moved = abs(candidate - beta)
        beta, (nll, grad, hess) = candidate, new
        if moved <= tolerance * beta or abs(grad) <= tolerance:
            break
    return 1.0 / beta


def one_softmax(split: Split) -> bool:
    """Whether every row of the logits is the first one up to a shift: one softmax for all
    (constant logits), whose NLL no temperature fits."""
    first = np.asarray(split.logits[0], np.float64)
    first = first - first.max()

    def differing(chunk):
        z = np.asarray(chunk.logits, np.float64)
        return (np.count_nonzero(np.any(z - z.max(axis=1, keepdims=True) != first, axis=1)),)

    return len(split) > 0 and fold_chunks(split, differing, ("logits",))[0] == 0


class TemperatureScaling(ncood.Scorer):
    """Temperature-scaled MSP (Guo et al., ICML 2017): max_c softmax(z / T)_c, with T given or
    fitted on the ID train logits by minimising their negative log-likelihood."""

    def __init__(self, T: float | None = None) -> None:
        if T is not None:
            check_temperature("tscaling.T", T)
        self.T = T

    def fit(self, train: Split, head: Head) -> None:
        temperature = self.T
        if temperature is None and one_softmax(train):
            temperature = 1.0
            warn(
                "tscaling: the ID train logits are constant (every sample has the same "
                "softmax), so they say nothing about T; T = 1 is used — set tscaling.T to "
                "choose it"
            )
        elif temperature is None:
            temperature = fit_temperature(train)
            if min(abs(temperature - bound) / bound for bound in T_BOUNDS) < 1e-6:
                why = (
                    "train logits nearly separable"
                    if temperature < 1
                    else "train logits no better than a uniform softmax"
                )
                warn(
                    f"tscaling: the ID train NLL keeps falling towards T = {temperature:g} "
                    f"({why}); T is held there — set tscaling.T to choose it"
                )
        self.temperature = float(temperature)
        self.resolved_params = {"T": self.temperature}

    def score(self, split: Split) -> np.ndarray:
        return map_rows(
            split,
            lambda chunk: np.exp(
                log_softmax(chunk.logits.astype(np.float64) / self.temperature)
            ).max(axis=1),
            ("logits",),
        )


class WeightedEnergy(ncood.Scorer):
    """Weighted energy (VOS, Du et al., ICLR 2022): log Σ_c max(w_c, 0) e^{z_c}.

    ``weights``: ``uniform`` (all 1: the energy), ``prior`` (the ID train class frequencies)
    or the path of a file holding the C weights (``.npy``, or text that ``numpy.loadtxt``
    reads), e.g. the weights a VOS training learnt.
    """

    def __init__(self, weights: str = "uniform") -> None:
        self.weights = weights

    def fit(self, train: Split, head: Head) -> None:
        num_classes = train.logits.shape[1]
        if self.weights == "uniform":
            weights = np.ones(num_classes)
        elif self.weights == "prior":
            weights = np.bincount(train.labels, minlength=num_classes) / len(train)
        else:
            weights = read_weights(Path(self.weights), num_classes)
        weights = np.maximum(weights, 0.0)
        if not np.any(weights > 0):
            raise NcoodError("webo: every class weight is ≤ 0, so every score would be −inf")
        with np.errstate(divide="ignore"):
            self.log_weights = np.log(weights)

    def score(self, split: Split) -> np.ndarray:
        # A weight of 0 drops its class: logsumexp over the others (log 0 = −inf adds nothing).
        return map_rows(
            split,
            lambda chunk: logsumexp_rows(chunk.logits.astype(np.float64) + self.log_weights),
            ("logits",),
        )


def read_weights(path: Path, num_classes: int) -> np.ndarray:
    try:
        values = np.load(path) if path.suffix == ".npy" else np.loadtxt(path, ndmin=1)
    except (OSError, ValueError) as exc:
        raise NcoodError(
            f"webo.weights: {str(path)!r} is neither uniform, prior nor a readable file of "
            f"{num_classes} numbers ({exc})"
        ) from None
    values = np.asarray(values, np.float64).reshape(-1)
    if values.shape != (num_classes,) or not np.all(np.isfinite(values)):
        raise NcoodError(
            f"webo.weights: {path} holds {values.size} values, expected {num_classes} finite ones"
        )
    return values


@ncood.hookimpl
def register_scorers(register):
    register(
        "entropy", Entropy, "minus the entropy of the softmax", title="Entropy", family="logit"
    )
    register(
        "klm",
        KLMatching,
        "−min_k KL(softmax ‖ mean ID train softmax of the samples predicted k)",
        title="KL Matching",
        family="logit",
    )
    register(
        "tscaling",
        TemperatureScaling,
        "maximum softmax of logits / T (T fitted on the ID train NLL unless given)",
        title="Temp. Scaling",
        family="logit",
    )
    register(
        "webo",
        WeightedEnergy,
        "log Σ_c w_c exp(z_c), class-weighted energy",
        title="WEBO",
        family="logit",
    )
