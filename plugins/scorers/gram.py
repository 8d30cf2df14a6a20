"""Gram matrices (Sastry & Oore, ICML 2020), as pytorch-ood's ``Gram``: how far the Gram
statistics of a sample's stage maps fall outside the range seen on ID train for its class.

For a map F (C × S values) and a pole p, the Gram vector is g = sign(G)·|G|^{1/p} with
G = Σ_j (Fᵖ)(Fᵖ)ᵀ[:, j], computed as Fᵖ·(Σ_c Fᵖ_c) (the same sum without the C × C matrix).
Fit: per class (the true label), the min and max of each entry over a (1 − validation_fraction)
part of the class; the other part's mean deviation is each layer's normalizer. Score: the
deviation from the predicted class's bounds, summed over poles, divided by the layer's
normalizer, summed over layers, negated. Gram vectors and deviations are float64.

One pass over train, bounded memory: the split is drawn from the labels before the pass, the
bounds are running min/max, and only the validation part's Gram vectors are kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

import ncood
from ncood.errors import NcoodError
from ncood.host.network import Batches, Network
from ncood.host.scoring import Fraction, check_seed

if TYPE_CHECKING:  # torch loads when a scorer runs: listing plugins stays light
    import torch

# Each pole costs a Gram vector per layer and image, and |F|^p overflows float64 for large p
# (the paper uses p ≤ 10): more is refused before any work.
MAX_POLES = 20


def gram_vectors(maps: torch.Tensor, pole: int) -> torch.Tensor:
    """N × C Gram vectors of the N × C × … maps at one pole, in float64."""
    powered = maps.detach().double().reshape(maps.shape[0], maps.shape[1], -1) ** pole
    summed = (powered * powered.sum(dim=1, keepdim=True)).sum(dim=2)
    return summed.sign() * summed.abs() ** (1.0 / pole)


def deviation(g: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Σ over entries of the distance outside [low, high], relative to the bound."""
    import torch

    below = torch.relu(low - g) / torch.abs(low + 1e-6)
    above = torch.relu(g - high) / torch.abs(high + 1e-6)
    return (below + above).sum(dim=1)


def validation_mask(labels: np.ndarray, classes: int, fraction: float, seed: int) -> np.ndarray:
    """Which train samples form each class's validation part: the first int(fraction · n_c) of
    a permutation of the class's samples (in data order), classes in order, one generator."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    held = np.zeros(len(labels), dtype=bool)
    for c in range(classes):
        where = np.flatnonzero(labels == c)
        if len(where) == 0:
            raise NcoodError(f"gram: class {c} has no ID train samples, so no bounds")
        order = torch.randperm(len(where), generator=generator).numpy()
        held[where[order[: int(fraction * len(where))]]] = True
    return held


class Gram(ncood.Scorer):
    """−Σ_l δ_l(x) / E[δ_l]: the class-wise Gram bounds of ID train, by predicted class."""

    needs_network = True

    def __init__(
        self, layers: str = "", poles: int = 0, validation_fraction: Fraction = 0.1, seed: int = 0
    ) -> None:
        if not 0 <= poles <= MAX_POLES:
            raise ValueError(f"gram.poles must be 0 (one per layer) to {MAX_POLES}, got {poles}")
        if not 0 <= validation_fraction < 1:
            raise ValueError(
                f"gram.validation_fraction must be in [0, 1), got {validation_fraction}"
            )
        check_seed("gram.seed", seed)
        self.layers = [name.strip() for name in layers.split(",") if name.strip()]
        self.poles, self.fraction, self.seed = poles, validation_fraction, seed

    def statistics(self, network: Network, inputs: torch.Tensor):
        """The predicted classes and, per layer, the list of Gram vectors (one per pole)."""
        import torch

        with torch.no_grad(), network.capture(self.names) as seen:
            predicted = network.logits(inputs).argmax(dim=1).cpu()
            grams = [[gram_vectors(seen[n], p).cpu() for p in self.pole_list] for n in self.names]
        return predicted, grams

    def fit(self, network: Network, train: Batches) -> None:
        import torch

        self.names = self.layers or list(network.stages)
        if not self.names:
            raise NcoodError("gram: the network has no stage maps; name them with gram.layers")
        self.pole_list = list(range(1, (self.poles or len(self.names)) + 1))
        classes = network.submodule(network.head_name).out_features
        labels = np.asarray(train.labels)
        held = torch.from_numpy(validation_mask(labels, classes, self.fraction, self.seed))
        low = high = None
        kept_grams, kept_labels, start = [], [], 0
        for inputs, batch_labels in train:
            _, grams = self.statistics(network, inputs)
            batch_labels = batch_labels.cpu()
            batch_held = held[start : start + len(batch_labels)]
            start += len(batch_labels)
            if low is None:
                low = [
                    [torch.full((classes, g.shape[1]), torch.inf, dtype=g.dtype) for g in row]
                    for row in grams
                ]
                high = [[torch.full_like(b, -torch.inf) for b in row] for row in low]
            fitting = ~batch_held & (batch_labels >= 0)
            for c in batch_labels[fitting].unique().tolist():
                rows = fitting & (batch_labels == c)
                for bounds_low, bounds_high, row in zip(low, high, grams, strict=True):
                    for lo, hi, g in zip(bounds_low, bounds_high, row, strict=True):
                        lo[c] = torch.minimum(lo[c], g[rows].min(dim=0).values)
                        hi[c] = torch.maximum(hi[c], g[rows].max(dim=0).values)
            kept_grams.append([[g[batch_held] for g in row] for row in grams])
            kept_labels.append(batch_labels[batch_held])
        self.low, self.high = low, high
        self.norms = self.normalizers(kept_grams, torch.cat(kept_labels))

    def normalizers(self, kept_grams, labels: torch.Tensor) -> list[float]:
        """Each layer's mean validation deviation (1 where there is none, or it is 0)."""
        import torch

        norms = []
        for layer in range(len(self.names)):
            total = torch.zeros(len(labels), dtype=torch.float64)
            for pole in range(len(self.pole_list)):
                g = torch.cat([batch[layer][pole] for batch in kept_grams])
                total += deviation(g, self.low[layer][pole][labels], self.high[layer][pole][labels])
            mean = float(total.mean()) if len(total) else 0.0
            norms.append(mean if mean > 0 else 1.0)
        return norms

    def score(self, network: Network, split: Batches) -> np.ndarray:
        import torch

        scores = []
        for inputs, _ in split:
            predicted, grams = self.statistics(network, inputs)
            total = torch.zeros(len(predicted), dtype=torch.float64)
            for layer, row in enumerate(grams):
                spread = sum(
                    deviation(
                        g, self.low[layer][pole][predicted], self.high[layer][pole][predicted]
                    )
                    for pole, g in enumerate(row)
                )
                total += spread / self.norms[layer]
            scores.append(-total)
        return torch.cat(scores).numpy() if scores else np.zeros(0)


@ncood.hookimpl
def register_scorers(register):
    register(
        "gram",
        Gram,
        "negated deviation of the stage maps' Gram statistics from the class's ID train range",
        title="Gram",
        family="model",
    )
