"""The training objectives a run may choose: cross-entropy, LogitNorm, and the entropy
regularization of Harun et al. Each returns a sum over the batch (the step loop divides by
the global batch size, ncood.engine.loop).

LogitNorm (Wei et al., ICML 2022): cross-entropy of the logits divided by τ times their L2
norm, ``CE(f / (τ (‖f‖ + 1e-7)), y)``; the logits' norm no longer grows to lower the loss, so
over-confidence on OOD inputs does not either.

Entropy regularization (Harun, Gallardo & Kanan, ICML 2025, after Sablayrolles et al.'s KoLeo
estimator): ``−log(‖z_i − z_nn(i)‖ + 1e-8)`` summed over the batch, z the L2-normalized encoder
features and nn(i) the nearest other sample of the batch; it spreads the features out,
working against collapse in the encoder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

LOGITNORM_EPS = 1e-7
ENTROPY_EPS = 1e-8


def logitnorm_loss(
    logits: torch.Tensor, labels: torch.Tensor, tau: float, reduction: str = "sum"
) -> torch.Tensor:
    """``CE(f / (τ (‖f‖₂ + 1e-7)), y)``, the norm per sample (Wei et al. 2022, eq. 5)."""
    norms = torch.linalg.vector_norm(logits, dim=1, keepdim=True) + LOGITNORM_EPS
    return F.cross_entropy(logits / (norms * tau), labels, reduction=reduction)


def classification_loss(config) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The run's loss on (logits, labels), summed over the batch (``config``: TrainConfig)."""
    if config.loss == "logitnorm":
        tau = config.logitnorm_tau
        return lambda logits, labels: logitnorm_loss(logits, labels, tau)
    return cross_entropy_sum


def nearest_neighbour_entropy(features: torch.Tensor) -> torch.Tensor:
    """The entropy regularizer summed over the batch: ``−Σ log(‖z_i − z_nn(i)‖ + 1e-8)``
    with z = features / ‖features‖ (0 for a batch of fewer than 2)."""
    if features.shape[0] < 2:
        return features.sum() * 0.0
    z = F.normalize(features.float(), p=2, dim=1, eps=ENTROPY_EPS)
    with torch.no_grad():  # which neighbour is nearest carries no gradient
        dots = z @ z.T
        dots.fill_diagonal_(-2.0)  # never one's own neighbour (cosines are ≥ −1)
        nearest = dots.argmax(1)
    distances = torch.linalg.vector_norm(z - z[nearest] + ENTROPY_EPS, dim=1)
    return -torch.log(distances + ENTROPY_EPS).sum()


def cross_entropy_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, labels, reduction="sum")


@dataclass(frozen=True)
class Objective:
    """What a training step minimises: the classification loss of the logits, plus
    ``entropy_weight`` times the entropy regularizer of the encoder's output when non-zero."""

    classify: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = cross_entropy_sum
    entropy_weight: float = 0.0

    @property
    def uses_encoder(self) -> bool:
        """Whether the model must also return its encoder's output (``with_encoded``)."""
        return self.entropy_weight > 0

    def summed(self, outputs, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the batch's summed loss in fp32, the logits) from the model's outputs."""
        logits, encoded = outputs if self.uses_encoder else (outputs, None)
        loss = self.classify(logits.float(), labels)
        if encoded is not None:
            loss = loss + self.entropy_weight * nearest_neighbour_entropy(encoded)
        return loss, logits


def objective_of(config) -> Objective:
    """The run's objective (``config``: TrainConfig)."""
    return Objective(classification_loss(config), config.entropy_reg)
