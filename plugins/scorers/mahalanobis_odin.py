"""Mahalanobis with input preprocessing (Lee et al., NeurIPS 2018), as pytorch-ood's
``MahalanobisODIN``: one signed input-gradient step that brings the sample's features closer to
their nearest class mean, then the Mahalanobis score of the moved sample.

Fit: the class means μ_c and the tied within-class covariance Σ of the ID train features (the
head's input, computed through the network), Σ ridged as ``mahalanobis`` ridges it. Score:
M_c(f) = (f − μ_c)ᵀ Σ⁻¹ (f − μ_c), ĉ = argmin_c M_c(f(x)), x̂ = x − ε · sign(∇ₓ M_ĉ(f(x))),
score = −min_c M_c(f(x̂)) — with ε = 0, ``mahalanobis`` itself. As in ``odin``, ``pixel_units``
divides channel c's step by its normalization std (ε in [0, 1] pixel units). Distances are
float64 (through a whitening by the Cholesky factor of Σ).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

import ncood
from ncood.errors import NcoodError
from ncood.host.network import Batches, Network
from ncood.maths.stats import cholesky, ridged, train_moments
from ncood.store.features import Split

if TYPE_CHECKING:  # torch loads when a scorer runs: listing plugins stays light
    import torch

DEFAULT_RIDGE = 1e-6  # as ``mahalanobis``


class MahalanobisOdin(ncood.Scorer):
    """−min_c Mahalanobis distance after a step that lowers the nearest one; fitted."""

    needs_network = True

    def __init__(
        self, eps: float = 0.002, ridge: float = DEFAULT_RIDGE, pixel_units: bool = True
    ) -> None:
        if not eps >= 0 or not np.isfinite(eps):
            raise ValueError(f"mahalanobis-odin.eps must be 0 or more, got {eps}")
        if not ridge >= 0 or not np.isfinite(ridge):
            raise ValueError(f"mahalanobis-odin.ridge must be 0 or more, got {ridge}")
        self.eps, self.ridge, self.pixel_units = eps, ridge, pixel_units

    def fit(self, network: Network, train: Batches) -> None:
        import torch

        features, labels = [], []
        with torch.no_grad():
            for inputs, batch_labels in train:
                kept = batch_labels >= 0
                features.append(network.penultimate(inputs[kept])[0].float().cpu().numpy())
                labels.append(batch_labels[kept].cpu().numpy())
        if not features or not sum(len(f) for f in features):
            raise NcoodError("mahalanobis-odin: ID train has no labelled image to fit on")
        values, classes = np.concatenate(features), np.concatenate(labels).astype(np.int64)
        num_classes = int(network.submodule(network.head_name).out_features)
        moments = train_moments(Split(values, values[:, :0], classes), num_classes)
        covariance = ridged(moments.within_class_covariance(), self.ridge)
        chol = cholesky(covariance, "tied within-class covariance")
        present = np.bincount(classes, minlength=num_classes)[:num_classes] > 0
        whiten = np.linalg.inv(chol)  # w(f) = L⁻¹(f − m): M_c = ‖w(f) − w(μ_c)‖²
        # kept as arrays: tensors made here under a caller's inference mode could not enter
        # the gradient of the step later
        self.origin, self.whiten = moments.mean, whiten.T.copy()
        self.centres = (moments.class_means[present] - moments.mean) @ whiten.T

    def distances(self, features: torch.Tensor) -> torch.Tensor:
        """N × classes squared Mahalanobis distances, float64 (differentiable)."""
        import torch

        device = features.device
        origin, whiten, centres = (
            torch.as_tensor(a, device=device) for a in (self.origin, self.whiten, self.centres)
        )
        whitened = (features.double() - origin) @ whiten
        squared = (
            (whitened * whitened).sum(dim=1, keepdim=True)
            - 2.0 * whitened @ centres.T
            + (centres * centres).sum(dim=1)[None, :]
        )  # as ``mahalanobis`` expands it
        return squared.clamp_min(0.0)

    def perturbed(self, network: Network, inputs: torch.Tensor) -> torch.Tensor:
        def loss(x: torch.Tensor) -> torch.Tensor:  # the distance to the nearest class mean
            distances = self.distances(network.penultimate(x)[0])
            nearest = distances.detach().argmin(dim=1)
            return distances.gather(1, nearest[:, None]).sum()

        x, gradient = network.input_gradient(inputs, loss)
        step = gradient.sign().to(x.dtype)
        return x - self.eps * (network.pixel_step(step) if self.pixel_units else step)

    def score(self, network: Network, split: Batches) -> np.ndarray:
        import torch

        scores = []
        for inputs, _ in split:
            moved = self.perturbed(network, inputs) if self.eps else inputs
            with torch.no_grad():
                distances = self.distances(network.penultimate(moved)[0])
            scores.append(-distances.min(dim=1).values.cpu())
        return torch.cat(scores).numpy() if scores else np.zeros(0)


@ncood.hookimpl
def register_scorers(register):
    register(
        "mahalanobis-odin",
        MahalanobisOdin,
        "Mahalanobis score after a signed input-gradient step toward the nearest class mean "
        "(through the network)",
        title="Mahalanobis+ODIN",
        family="model",
    )
