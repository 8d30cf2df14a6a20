"""Scorers that read only the logits: MSP, Max Logit, Energy and GEN.

Each reads the logits chunk by chunk (``Split.chunks``), so a large split never exists as an
N×C float64 array, only one chunk of it at a time.
"""

from __future__ import annotations

import numpy as np

import ncood
from ncood.host.scoring import check_temperature
from ncood.maths.stats import logsumexp_rows
from ncood.store.chunked import map_rows
from ncood.store.features import Head, Split


def softmax(logits: np.ndarray, axis: int = 1) -> np.ndarray:
    """``scipy.special.softmax``'s operations, in NumPy (scipy.special costs 0.5 s to import)."""
    peak = np.max(logits, axis=axis, keepdims=True)
    shifted = np.exp(logits - peak)
    return shifted / np.sum(shifted, axis=axis, keepdims=True)


class LogitScorer(ncood.Scorer):
    """Nothing to fit: the score is a function of each sample's logits."""

    def fit(self, train: Split, head: Head) -> None:
        return None

    def score(self, split: Split) -> np.ndarray:
        return map_rows(split, lambda chunk: self.of_logits(chunk.logits), ("logits",))

    def of_logits(self, logits: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class MaxSoftmax(LogitScorer):
    """MSP (Hendrycks & Gimpel, 2017): max_c softmax(z)_c."""

    def of_logits(self, logits: np.ndarray) -> np.ndarray:
        return softmax(logits.astype(np.float64), axis=1).max(axis=1)


class MaxLogit(LogitScorer):
    """Max Logit (Hendrycks et al., 2022): max_c z_c."""

    def of_logits(self, logits: np.ndarray) -> np.ndarray:
        return logits.max(axis=1).astype(np.float64)


class Energy(LogitScorer):
    """Negative free energy (Liu et al., 2020): T · logsumexp(z / T)."""

    def __init__(self, T: float = 1.0) -> None:
        check_temperature("energy temperature T", T)
        self.T = T

    def of_logits(self, logits: np.ndarray) -> np.ndarray:
        return self.T * logsumexp_rows(logits.astype(np.float64) / self.T)


class GeneralizedEntropy(LogitScorer):
    """GEN (Liu et al., CVPR 2023): −Σ_{j ∈ top M} p_j^γ (1 − p_j)^γ over the M largest
    softmax probabilities (all C of them when C ≤ M)."""

    def __init__(self, gamma: float = 0.1, M: int = 100) -> None:
        if not 0 < gamma < 1:
            raise ValueError(f"gen.gamma must be in (0, 1), got {gamma}")
        if M < 1:
            raise ValueError(f"gen.M must be ≥ 1, got {M}")
        self.gamma, self.M = gamma, M

    def of_logits(self, logits: np.ndarray) -> np.ndarray:
        probs = softmax(logits.astype(np.float64), axis=1)
        num_classes = probs.shape[1]
        if num_classes > self.M:
            probs = np.partition(probs, num_classes - self.M, axis=1)[:, num_classes - self.M :]
        return -np.sum(probs**self.gamma * (1.0 - probs) ** self.gamma, axis=1)


@ncood.hookimpl
def register_scorers(register):
    register("msp", MaxSoftmax, "maximum softmax probability", title="MSP", family="logit")
    register("maxlogit", MaxLogit, "maximum logit", title="Max Logit", family="logit")
    register("energy", Energy, "T · logsumexp(logits / T)", title="Energy Score", family="logit")
    register(
        "gen",
        GeneralizedEntropy,
        "minus the generalized entropy of the top-M softmax",
        title="GEN",
        family="logit",
    )
