"""ODIN (Liang et al., ICLR 2018): one signed input-gradient step that raises the temperature-
scaled softmax of the predicted class, then the max softmax at temperature T.

x̂ = x − eps · sign(∇ₓ CE(f(x)/T, ŷ)), ŷ = argmax f(x), as pytorch-ood's ``odin_preprocessing``.
ncood's inputs are normalized, so by default (``pixel_units``) the sign step of channel c is
divided by that channel's normalization std: eps is then a step in [0, 1] pixel units, as in
the paper (pytorch-ood's ``norm_std``). Only the input gets a gradient (torch.autograd.grad);
the score, max_c softmax(f(x̂)/T)_c, is computed in float64 from the logits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

import ncood
from ncood.host.network import Batches, Network
from ncood.host.scoring import check_temperature

if TYPE_CHECKING:  # torch loads when a scorer runs: listing plugins stays light
    import torch


class Odin(ncood.Scorer):
    """Max softmax at temperature T after the ODIN input step; no fit."""

    needs_network = True

    def __init__(self, eps: float = 0.0014, T: float = 1000.0, pixel_units: bool = True) -> None:
        if not eps >= 0:
            raise ValueError(f"odin.eps must be 0 or more, got {eps}")
        check_temperature("odin.T", T)
        self.eps, self.T, self.pixel_units = eps, T, pixel_units

    def fit(self, network: Network, train: Batches) -> None:
        return None

    def perturbed(self, network: Network, inputs: torch.Tensor) -> torch.Tensor:
        """x̂ = x − ε · sign(∇ₓ CE(f(x)/T, ŷ))."""
        import torch.nn.functional as F

        def loss(x: torch.Tensor) -> torch.Tensor:
            scaled = network.logits(x) / self.T
            return F.cross_entropy(scaled, scaled.argmax(dim=1))

        x, gradient = network.input_gradient(inputs, loss)
        step = gradient.sign()
        return x - self.eps * (network.pixel_step(step) if self.pixel_units else step)

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
        "odin",
        Odin,
        "max softmax at temperature T after a signed input-gradient step (through the network)",
        title="ODIN",
        family="model",
    )
