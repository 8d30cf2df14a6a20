"""Scorers that read only the logits: MSP, Max Logit and Energy."""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp, softmax

import ncood
from ncood.features import Head, Split


class LogitScorer:
    """Nothing to fit: the score is a function of each sample's logits."""

    def fit(self, train: Split, head: Head) -> None:
        return None


class MaxSoftmax(LogitScorer):
    """MSP (Hendrycks & Gimpel, 2017): max_c softmax(z)_c."""

    def score(self, split: Split) -> np.ndarray:
        return softmax(split.logits.astype(np.float64), axis=1).max(axis=1)


class MaxLogit(LogitScorer):
    """Max Logit (Hendrycks et al., 2022): max_c z_c."""

    def score(self, split: Split) -> np.ndarray:
        return split.logits.astype(np.float64).max(axis=1)


class Energy(LogitScorer):
    """Negative free energy (Liu et al., 2020): T · logsumexp(z / T)."""

    def __init__(self, T: float = 1.0) -> None:
        if T <= 0:
            raise ValueError(f"energy temperature T must be positive, got {T}")
        self.T = T

    def score(self, split: Split) -> np.ndarray:
        return self.T * logsumexp(split.logits.astype(np.float64) / self.T, axis=1)


@ncood.hookimpl
def register_scorers(register):
    register("msp", MaxSoftmax, "maximum softmax probability", title="MSP")
    register("maxlogit", MaxLogit, "maximum logit", title="Max Logit")
    register("energy", Energy, "T · logsumexp(logits / T)", title="Energy Score")
