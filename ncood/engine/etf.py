"""Fixed simplex equiangular tight frames: the classifier an ``--head etf`` run keeps frozen,
and the projector of Harun et al. (ICML 2025).

A simplex ETF of C classes in a D-dimensional feature space is C unit vectors whose pairwise
cosines are all −1/(C−1): the geometry Neural Collapse converges to (Papyan et al. 2020), fixed
from the start (Zhu et al., NeurIPS 2021; Yang et al., NeurIPS 2022). It spans C−1 dimensions,
so it exists for C ≤ D + 1. Built in float64 (the Gram matrix then equals the ideal to 1e-15),
from a seeded QR, so the same configuration gives the same frame.
"""

from __future__ import annotations

import math

import torch

from ncood.errors import NcoodError


def check_etf_fits(num_classes: int, feature_dim: int) -> None:
    """One line when C unit vectors cannot be equiangular at −1/(C−1) in D dimensions."""
    if num_classes > feature_dim + 1:
        raise NcoodError(
            f"--head etf needs C ≤ D + 1: {num_classes} classes do not fit a simplex ETF in "
            f"{feature_dim} feature dimensions (raise --width, or train --head linear)"
        )
    if num_classes < 2:
        raise NcoodError("--head etf needs at least 2 classes")


def simplex_etf(num_classes: int, feature_dim: int, seed: int = 0) -> torch.Tensor:
    """The C×D float64 matrix whose rows are the frame's vectors.

    Rows ``sqrt(C/(C−1)) · V Uᵀ``: V (C×(C−1)) an orthonormal basis of the vectors orthogonal
    to 1 (so V Vᵀ = I − 11ᵀ/C), U (D×(C−1)) orthonormal columns from the QR of a seeded
    Gaussian matrix. Gram = C/(C−1) (I − 11ᵀ/C): ones on the diagonal, −1/(C−1) elsewhere."""
    check_etf_fits(num_classes, feature_dim)
    c = num_classes
    centring = torch.eye(c, dtype=torch.float64) - 1.0 / c
    v = torch.linalg.qr(centring[:, : c - 1]).Q  # its columns span 1's orthogonal complement
    generator = torch.Generator().manual_seed(seed)
    gaussian = torch.randn(feature_dim, c - 1, generator=generator, dtype=torch.float64)
    u = torch.linalg.qr(gaussian).Q
    return math.sqrt(c / (c - 1)) * v @ u.T


def etf_projector_weight(rows: int, columns: int, dim: int) -> torch.Tensor:
    """One layer of Harun et al.'s fixed projector, float64: ``sqrt(c/(c−1)) (I − 11ᵀ/c)``
    cut to rows×columns (a rectangular identity minus 1/c everywhere), c = the projector's
    output dimension."""
    eye = torch.eye(rows, columns, dtype=torch.float64)
    return math.sqrt(dim / (dim - 1)) * (eye - 1.0 / dim)
