"""Deep nearest neighbours (Sun et al., ICML 2022): −‖z − z₍ₖ₎‖ on L2-normalized features.

z = f/‖f‖; z₍ₖ₎ is the k-th nearest normalized ID train feature. For unit vectors
‖a − b‖² = 2 − 2 a·b, so the k-th nearest neighbour is the k-th largest dot product: the search
is blocked matrix products (queries × bank blocks, exact, no index) with a running top-k, on
the CPU or on a GPU (``device``). At ImageNet size the exact CPU search costs
2 · N_bank · D · N_queries flops (≈ 700 TFLOP for 1.28M × 2048 against 136k queries, hours
on a small CPU): ``bank_fraction`` keeps a seeded random share of the train bank, by default
the KNN paper's own ImageNet recipe (1 % beyond 200,000 train samples, ncood.maths.bank), and
the scorer warns when the exact search would be long.
"""

from __future__ import annotations

import time

import numpy as np

import ncood
from ncood.errors import NcoodError, warn
from ncood.host.scoring import DumpShape, Fraction, check_seed
from ncood.maths.bank import bank_fraction, bank_rows, bank_size, kept_rows
from ncood.store.features import Head, Split

QUERY_BLOCK = 1024  # queries per matrix product
BANK_BLOCK = 65_536  # bank rows per product: a 1024 × 65,536 float32 block is 256 MiB
SLOW_SECONDS = 180.0  # warn when one split's exact search is expected to take longer


def normalized(features: np.ndarray) -> np.ndarray:
    values = np.asarray(features, np.float32)
    norms = np.linalg.norm(values, axis=1, keepdims=True)
    return values / np.maximum(norms, np.finfo(np.float32).tiny)


class KNN(ncood.Scorer):
    def __init__(
        self,
        k: int = 50,
        bank_fraction: Fraction | None = None,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        if k < 1:
            raise ValueError(f"knn.k must be ≥ 1, got {k}")
        if bank_fraction is not None and not 0 < bank_fraction <= 1:
            raise ValueError(f"knn.bank_fraction must be in (0, 1], got {bank_fraction}")
        check_seed("knn.seed", seed)
        self.k, self.bank_fraction, self.seed, self.device = k, bank_fraction, seed, device

    def fit(self, train: Split, head: Head) -> None:
        import torch

        try:
            self.torch_device = torch.device(self.device)
            torch.empty(0, device=self.torch_device)
        except (RuntimeError, ValueError) as exc:
            raise NcoodError(f"knn.device={self.device!r} is not usable here ({exc})") from None
        n = len(train)
        fraction = bank_fraction(self.bank_fraction, n)
        size = bank_size(fraction, n, self.k)
        if self.k > size:
            raise NcoodError(f"knn.k = {self.k} exceeds the {size} ID train samples")
        keep = bank_rows(n, size, self.seed)  # a seeded random share of the bank, in file order
        bank = np.empty((size, train.features.shape[1]), np.float32)
        filled = 0
        for chunk in train.chunks(parts=("features",)):
            rows = chunk.features[kept_rows(keep, chunk.start, chunk.stop)]
            bank[filled : filled + len(rows)] = normalized(rows)
            filled += len(rows)
        self.bank = torch.from_numpy(bank).to(self.torch_device)
        self.resolved_params = {
            "bank_fraction": fraction,
            "bank_size": size,
            "device": str(self.torch_device),
        }
        self.warned = False

    def memory_bytes(self, shape: DumpShape) -> int:
        """The float32 bank, and a block of similarities with its running top-k (twice)."""
        size = bank_size(bank_fraction(self.bank_fraction, shape.train), shape.train, self.k)
        return 4 * size * shape.dim + 2 * 4 * QUERY_BLOCK * (min(size, BANK_BLOCK) + self.k)

    def score(self, split: Split) -> np.ndarray:
        import torch

        kth_similarity = np.empty(len(split), np.float64)
        started, done = time.perf_counter(), 0
        with torch.no_grad():
            for chunk in split.chunks(QUERY_BLOCK, ("features",)):
                block = torch.from_numpy(normalized(chunk.features)).to(self.torch_device)
                kth_similarity[chunk.rows] = self.kth(block).double().cpu().numpy()
                done += len(chunk)
                self.warn_if_slow(len(split), done, time.perf_counter() - started)
        return -np.sqrt(np.clip(2.0 - 2.0 * kth_similarity, 0.0, None))

    def kth(self, queries):
        """The k-th largest similarity of each query against the bank, bank block by block."""
        import torch

        best = None
        for start in range(0, self.bank.shape[0], BANK_BLOCK):
            similarity = queries @ self.bank[start : start + BANK_BLOCK].T
            if best is not None:
                similarity = torch.cat([best, similarity], dim=1)
            best = similarity.topk(min(self.k, similarity.shape[1]), dim=1, sorted=True).values
        return best[:, self.k - 1]

    def warn_if_slow(self, total: int, done: int, seconds: float) -> None:
        if self.warned or done >= total or seconds < 1.0:
            return
        expected = seconds * total / done
        if expected > SLOW_SECONDS:
            self.warned = True
            flops = 2.0 * self.bank.shape[0] * self.bank.shape[1] * total
            warn(
                f"knn: exact search of {total:,} queries against {self.bank.shape[0]:,} train "
                f"features ({flops / 1e12:.0f} TFLOP) will take about {expected / 60:.0f} min "
                f"on {self.torch_device}; --set knn.bank_fraction=0.01 (the KNN paper's "
                "ImageNet setting) or a GPU (--set knn.device=cuda) makes it minutes"
            )


@ncood.hookimpl
def register_scorers(register):
    register(
        "knn",
        KNN,
        "−distance to the k-th nearest normalized ID train feature",
        title="KNN",
        family="feature",
    )
