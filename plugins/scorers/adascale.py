"""AdaSCALE (Regmi et al., 2025, "AdaSCALE: Adaptive Scaling for OOD Detection"; the authors'
postprocessor and networks in OpenOOD): SCALE whose percentile adapts to each sample, from how
much its features move when its least influential input pixels are nudged.

For a sample x with features f (the head's input, D values): g = ∇ₓ max_c z_c(x); the ``o``
percent of input values with the smallest |g| move by ``step`` · sign(g), giving x̃ and f̃.
Q' = Σ_{top k1 of f} relu(f̃) + λ Σ_{top k2 of f} |f − f̃| (k1, k2 percent of D, the indices of
f's largest values). Fit: Q' on ``fit_images`` ID train images, their empirical CDF F. Score:
p = p_lo + (1 − F(Q'))(p_hi − p_lo), k = D − round(D · p / 100), s = Σ relu(f) / Σ_{top k}
relu(f); AdaSCALE-A: logsumexp(W (f · e^s) + b); AdaSCALE-L: logsumexp((W f + b) · s²).

The authors' 0.5 step is in the network's (normalized) input units, as is ``step`` here. k1,
k2 and k are at least 1 (the authors' int() gives 0 on narrow features, which makes Q' or s
empty); s = 1 where relu(f) is all zero (0 / 0). Arithmetic after the network is float64.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

import ncood
from ncood.errors import NcoodError
from ncood.host.network import Batches, Network
from ncood.host.scoring import Percent, check_seed

if TYPE_CHECKING:  # torch loads when a scorer runs: listing plugins stays light
    import torch


def top_count(dim: int, percent: float) -> int:
    """int(D · percent / 100), at least 1."""
    return max(1, int(dim * percent / 100))


def nudged(network: Network, inputs: torch.Tensor, percent: float, step: float):
    """x + step · sign(g) on the ``percent`` % of each sample's input values of smallest |g|,
    g the input gradient of the max logit (torch.topk's choice among equal |g|); and the
    features of x, from the same forward."""
    import torch

    seen: list[torch.Tensor] = []

    def max_logit(x: torch.Tensor) -> torch.Tensor:
        features, logits = network.penultimate(x)
        seen.append(features)
        return logits.max(dim=1).values.sum()

    x, gradient = network.input_gradient(inputs, max_logit)
    features = seen[-1]
    flat = gradient.reshape(len(x), -1)
    count = int(flat.shape[1] * percent / 100)
    mask = torch.zeros_like(flat)
    if count:
        mask.scatter_(1, flat.abs().topk(count, dim=1, largest=False).indices, 1.0)
    return x + step * flat.sign().mul(mask).reshape(x.shape), features.detach()


class AdaScale(ncood.Scorer):
    """logsumexp of the logits scaled by a per-sample SCALE factor; fitted (an eCDF)."""

    needs_network = True
    variant = "A"

    def __init__(
        self,
        lower_percentile: Percent = 75.0,
        upper_percentile: Percent = 85.0,
        k1: float = 5.0,
        k2: float = 1.0,
        lam: float = 10.0,
        o: Percent = 5.0,
        step: float = 0.5,
        fit_images: int = 5000,
        seed: int = 0,
    ) -> None:
        where = f"adascale-{self.variant.lower()}"
        if not 0 < lower_percentile <= upper_percentile < 100:
            raise ValueError(
                f"{where}: need 0 < lower_percentile ≤ upper_percentile < 100 (percent), got "
                f"{lower_percentile} and {upper_percentile}"
            )
        for name, value in (("k1", k1), ("k2", k2), ("o", o)):
            if not 0 <= value <= 100:
                raise ValueError(f"{where}.{name} is a percent in [0, 100], got {value}")
        if not lam >= 0 or not np.isfinite(lam):
            raise ValueError(f"{where}.lam must be 0 or more, got {lam}")
        if not np.isfinite(step):
            raise ValueError(f"{where}.step must be a number, got {step}")
        if fit_images < 1:
            raise ValueError(f"{where}.fit_images must be 1 or more, got {fit_images}")
        check_seed(f"{where}.seed", seed)
        self.low, self.high = lower_percentile, upper_percentile
        self.k1, self.k2, self.lam, self.o, self.step = k1, k2, lam, o, step
        self.fit_images, self.seed = fit_images, seed

    def measured(self, network: Network, inputs: torch.Tensor):
        """f (float64) and Q' of a batch."""
        import torch

        moved, features = nudged(network, inputs, self.o, self.step)
        features = features.double()
        with torch.no_grad():
            shifted = network.penultimate(moved)[0].double()
        dim = features.shape[1]
        first = features.topk(top_count(dim, self.k1), dim=1).indices
        second = features.topk(top_count(dim, self.k2), dim=1).indices
        kept = torch.relu(shifted).gather(1, first).sum(dim=1)
        moved_by = (features - shifted).abs().gather(1, second).sum(dim=1)
        return features, kept + self.lam * moved_by

    def fit(self, network: Network, train: Batches) -> None:
        import torch

        labels = np.asarray(train.labels)
        usable = np.flatnonzero(labels >= 0)
        if not len(usable):
            raise NcoodError(f"adascale-{self.variant.lower()}: ID train has no labelled image")
        generator = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(len(usable), generator=generator).numpy()
        wanted = np.zeros(len(labels), dtype=bool)
        wanted[usable[order[: self.fit_images]]] = True
        values, start = [], 0
        for inputs, batch_labels in train:
            rows = wanted[start : start + len(batch_labels)]
            start += len(batch_labels)
            if rows.any():
                picked = inputs[torch.from_numpy(rows).to(inputs.device)]
                values.append(self.measured(network, picked)[1].cpu().numpy())
        self.fitted = np.sort(np.concatenate(values))
        self.resolved_params = {"fitted_on": int(len(self.fitted))}

    def score(self, network: Network, split: Batches) -> np.ndarray:
        import torch

        head = network.submodule(network.head_name)
        weight, bias = head.weight.detach().double(), head.bias
        bias = bias.detach().double() if bias is not None else torch.zeros_like(weight[:, 0])
        scores = []
        for inputs, _ in split:
            features, q = self.measured(network, inputs)
            below = np.searchsorted(self.fitted, q.cpu().numpy(), side="right") / len(self.fitted)
            percentile = self.low + (1.0 - below) * (self.high - self.low)
            scale = torch.from_numpy(self.scales(features.cpu(), percentile))
            scale = scale.to(features.device)
            w, b = weight.to(features.device), bias.to(features.device)
            if self.variant == "A":
                logits = (features * torch.exp(scale)[:, None]) @ w.T + b
            else:
                logits = (features @ w.T + b) * (scale**2)[:, None]
            scores.append(torch.logsumexp(logits, dim=1).cpu())
        return torch.cat(scores).numpy() if scores else np.zeros(0)

    @staticmethod
    def scales(features: torch.Tensor, percentile: np.ndarray) -> np.ndarray:
        """s = Σ relu(f) / Σ of its top k, k = D − round(D · p / 100) per sample (at least 1)."""
        active = np.maximum(features.numpy(), 0.0)
        dim = active.shape[1]
        keep = np.maximum(dim - np.round(dim * percentile / 100.0).astype(np.int64), 1)
        ordered = -np.sort(-active, axis=1)
        top = np.take_along_axis(np.cumsum(ordered, axis=1), keep[:, None] - 1, axis=1)[:, 0]
        total = active.sum(axis=1)
        return np.where(top > 0, total / np.where(top > 0, top, 1.0), 1.0)


class AdaScaleL(AdaScale):
    """AdaSCALE-L: the logits times s² (the authors' ``logit_scaling``)."""

    variant = "L"


@ncood.hookimpl
def register_scorers(register):
    register(
        "adascale-a",
        AdaScale,
        "energy after scaling the features by a per-sample SCALE factor (through the network)",
        title="AdaSCALE-A",
        family="model",
    )
    register(
        "adascale-l",
        AdaScaleL,
        "energy of the logits scaled by a per-sample SCALE factor (through the network)",
        title="AdaSCALE-L",
        family="model",
    )
