"""RankFeat (Song et al., NeurIPS 2022), as pytorch-ood's ``RankFeat``: remove the rank-1
component of each sample's last stage map, let the rest of the network run, take the energy.

Each sample's map is a C × HW matrix X; X' = X − σ₁u₁v₁ᵀ with its top singular triplet, from
the exact SVD (``power_iterations`` = 0) or from that many power iterations started at the
all-ones vector (the paper's fast variant; a ReLU map's top right singular vector is
non-negative, so the start is never orthogonal to it). The SVD runs in float64 and X' goes on
in the map's dtype; the score T·logsumexp(z/T) is float64.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

import ncood
from ncood.errors import NcoodError
from ncood.host.network import Batches, Network
from ncood.host.scoring import check_temperature

if TYPE_CHECKING:  # torch loads when a scorer runs: listing plugins stays light
    import torch

# Each step is two batched products over every image's map (the paper uses 20): more is
# refused before any work, rather than running for hours without a word.
MAX_POWER_ITERATIONS = 1_000


def top_component(matrices: torch.Tensor, power_iterations: int = 0) -> torch.Tensor:
    """σ₁u₁v₁ᵀ of each B × C × S matrix."""
    import torch

    if power_iterations == 0:
        u, s, vh = torch.linalg.svd(matrices, full_matrices=False)
        return s[:, :1, None] * u[:, :, :1] @ vh[:, :1, :]
    v = torch.ones(matrices.shape[0], matrices.shape[2], 1, dtype=matrices.dtype)
    v = v.to(matrices.device) / matrices.shape[2] ** 0.5
    for _ in range(power_iterations):
        u = matrices @ v
        u = u / u.norm(dim=1, keepdim=True).clamp_min(1e-300)
        v = matrices.transpose(1, 2) @ u
        v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-300)
    return (matrices @ v) @ v.transpose(1, 2)


def without_rank1(maps: torch.Tensor, power_iterations: int = 0) -> torch.Tensor:
    """The B × C × H × W maps less each sample's rank-1 component."""
    if maps.ndim != 4:
        raise NcoodError(f"rankfeat: the stage gives {maps.ndim}-D outputs, not B × C × H × W maps")
    if maps.shape[2] * maps.shape[3] == 1 or maps.shape[1] == 1:
        # a C × 1 matrix is its own rank-1 part: nothing would be left, every score the same
        raise NcoodError(
            f"rankfeat: the stage's maps are {maps.shape[1]} × {maps.shape[2]} × "
            f"{maps.shape[3]}, rank 1 already (removing it leaves zero); give larger images "
            f"or an earlier stage (--set rankfeat.stage=…)"
        )
    matrices = maps.double().reshape(maps.shape[0], maps.shape[1], -1)
    rest = matrices - top_component(matrices, power_iterations)
    return rest.reshape(maps.shape).to(maps.dtype)


class RankFeat(ncood.Scorer):
    """Energy of the logits once the stage map's rank-1 part is removed; no fit."""

    needs_network = True

    def __init__(self, stage: str = "", T: float = 1.0, power_iterations: int = 0) -> None:
        check_temperature("rankfeat.T", T)
        if not 0 <= power_iterations <= MAX_POWER_ITERATIONS:
            raise ValueError(
                f"rankfeat.power_iterations must be 0 (exact) to {MAX_POWER_ITERATIONS}, "
                f"got {power_iterations}"
            )
        self.stage, self.T, self.power_iterations = stage, T, power_iterations

    def fit(self, network: Network, train: Batches) -> None:
        return None

    def score(self, network: Network, split: Batches) -> np.ndarray:
        import torch

        stage = self.stage or (network.stages[-1] if network.stages else "")
        if not stage:
            raise NcoodError(
                "rankfeat: the network has no stage maps; name one with rankfeat.stage"
            )
        scores = []
        change = lambda maps: without_rank1(maps, self.power_iterations)  # noqa: E731
        with network.replacing(stage, change), torch.no_grad():
            for inputs, _ in split:
                scaled = network.logits(inputs).double() / self.T
                scores.append((self.T * torch.logsumexp(scaled, dim=1)).cpu())
        return torch.cat(scores).numpy() if scores else np.zeros(0)


@ncood.hookimpl
def register_scorers(register):
    register(
        "rankfeat",
        RankFeat,
        "energy after removing the rank-1 part of the last stage map (through the network)",
        title="RankFeat",
        family="model",
    )
