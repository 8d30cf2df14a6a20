"""I-ODIN (OpenOOD v1.5's ``iodin_postprocessor``): ODIN whose input step touches one value of
each image only, the one of largest |gradient|.

g = ∇ₓ CE(f(x)/T, ŷ), ŷ = argmax f(x); at the input value (channel, row, column) of largest
|g| (the first in memory order among equal ones, as ``torch.argmax``) x̂ = x − ε · s, s = +1
where g ≥ 0 and −1 elsewhere (OpenOOD's ``torch.ge``), divided by that channel's
normalization std with ``pixel_units`` (ε in [0, 1] pixel units, as ``odin``); every other value
is unchanged. Score: max_c softmax(f(x̂)/T)_c, float64 from the logits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

import ncood
from ncood.host.network import Batches, Network
from ncood.host.scoring import check_temperature

if TYPE_CHECKING:  # torch loads when a scorer runs: listing plugins stays light
    import torch


class IOdin(ncood.Scorer):
    """Max softmax at temperature T after a one-value ODIN step; no fit."""

    needs_network = True

    def __init__(self, eps: float = 0.0014, T: float = 1000.0, pixel_units: bool = True) -> None:
        if not eps >= 0 or not np.isfinite(eps):
            raise ValueError(f"iodin.eps must be 0 or more, got {eps}")
        check_temperature("iodin.T", T)
        self.eps, self.T, self.pixel_units = eps, T, pixel_units

    def fit(self, network: Network, train: Batches) -> None:
        return None

    def perturbed(self, network: Network, inputs: torch.Tensor) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        def loss(x: torch.Tensor) -> torch.Tensor:
            scaled = network.logits(x) / self.T
            # summed, not averaged as OpenOOD's: the same signs and argmax, and an image's
            # gradient does not shrink with the batch (no underflow at T = 1000)
            return F.cross_entropy(scaled, scaled.argmax(dim=1), reduction="sum")

        x, gradient = network.input_gradient(inputs, loss)
        step = torch.where(gradient >= 0, 1.0, -1.0).to(x.dtype)
        if self.pixel_units:
            step = network.pixel_step(step)
        flat = gradient.abs().reshape(len(x), -1)
        mask = torch.zeros_like(flat).scatter_(1, flat.argmax(dim=1, keepdim=True), 1.0)
        return x - self.eps * step * mask.reshape(x.shape)

    def score(self, network: Network, split: Batches) -> np.ndarray:
        import torch

        scores = []
        for inputs, _ in split:
            shifted = self.perturbed(network, inputs)
            with torch.no_grad():
                logits = network.logits(shifted).double()
            scores.append(torch.softmax(logits / self.T, dim=1).max(dim=1).values.cpu())
        return torch.cat(scores).numpy() if scores else np.zeros(0)


@ncood.hookimpl
def register_scorers(register):
    register(
        "iodin",
        IOdin,
        "max softmax at temperature T after an ODIN step on the one input value of largest "
        "gradient (through the network)",
        title="I-ODIN",
        family="model",
    )
