"""Deep nearest neighbours (Sun et al., ICML 2022): −‖z − z₍ₖ₎‖ on L2-normalised features.

z = f/‖f‖; z₍ₖ₎ is the k-th nearest normalised ID train feature. For unit vectors
‖a − b‖² = 2 − 2 a·b, so the k-th nearest neighbour is the k-th largest dot product: the search
is blocked matrix products against the whole train bank (no index, exact), with a top-k per row.
"""

from __future__ import annotations

import numpy as np

import ncood
from ncood.errors import NcoodError
from ncood.features import Head, Split

QUERY_BLOCK = 1024  # queries per matrix product: a 1024 × N_train float32 block (~200 MB at 50k)


def normalised(features: np.ndarray) -> np.ndarray:
    values = np.asarray(features, np.float32)
    norms = np.linalg.norm(values, axis=1, keepdims=True)
    return values / np.maximum(norms, np.finfo(np.float32).tiny)


class KNN:
    def __init__(self, k: int = 50) -> None:
        if k < 1:
            raise ValueError(f"knn.k must be ≥ 1, got {k}")
        self.k = k

    def fit(self, train: Split, head: Head) -> None:
        import torch

        if self.k > len(train):
            raise NcoodError(f"knn.k = {self.k} exceeds the {len(train)} ID train samples")
        self.bank = torch.from_numpy(np.ascontiguousarray(normalised(train.features)))

    def score(self, split: Split) -> np.ndarray:
        import torch

        queries = normalised(split.features)
        kth_similarity = np.empty(len(split), np.float64)
        with torch.no_grad():
            for start in range(0, len(split), QUERY_BLOCK):
                block = torch.from_numpy(queries[start : start + QUERY_BLOCK])
                similarity = block @ self.bank.T
                kth = similarity.topk(self.k, dim=1, sorted=True).values[:, -1]
                kth_similarity[start : start + block.shape[0]] = kth.double().numpy()
        return -np.sqrt(np.clip(2.0 - 2.0 * kth_similarity, 0.0, None))


@ncood.hookimpl
def register_scorers(register):
    register("knn", KNN, "−distance to the k-th nearest normalised ID train feature", title="KNN")
