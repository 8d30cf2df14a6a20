"""An example third-party ncood plugin: one OOD scorer, registered through the entry point."""

from __future__ import annotations

import numpy as np

import ncood


class FeatureNorm(ncood.Scorer):
    """Score = ‖f‖ᵖ scaled by the ID train mean norm.

    Higher = more in-distribution only when ID features have larger norms than OOD ones, which
    is the usual case for trained networks; ``sign = -1`` flips it for the opposite case.
    """

    def __init__(self, p: float = 1.0, sign: int = 1) -> None:
        if sign not in (1, -1):
            raise ValueError("sign must be 1 or -1")
        self.p, self.sign = p, sign
        self.scale = 1.0

    def fit(self, train, head) -> None:
        self.scale = float(np.linalg.norm(train.features, axis=1).mean())

    def score(self, split) -> np.ndarray:
        norms = np.linalg.norm(split.features.astype(np.float64), axis=1) / self.scale
        return self.sign * norms**self.p


@ncood.hookimpl
def register_scorers(register):
    register("featnorm", FeatureNorm, "feature norm (example plugin)", title="Feature norm")
