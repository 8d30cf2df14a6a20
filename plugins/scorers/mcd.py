"""Monte-Carlo dropout (Gal & Ghahramani, ICML 2016), as pytorch-ood's ``MCD``: N forwards
with dropout active, the softmax of each in float64.

``mean``: max_c mean_n p_n,c. ``var``: −mean_c var_n p_n,c (Bessel's N − 1; ID samples vary
less, hence the minus). Only the dropout modules go to train mode (BatchNorm keeps its running
statistics), and every module's mode is put back afterwards, even on error. A network without
any dropout module (ncood's ResNet-18, torchvision's ResNets) gets dropout of rate ``p`` on the
input of its head instead; with dropout modules present, ``p`` is unused. The draws come from a
forked RNG seeded with ``seed`` at each split: reproducible, and the caller's RNG is untouched.

With dropout on the head's input only, everything before the head gives the same output at
each of the N forwards: the network runs once per batch and only the head is sampled N times,
drawing the same masks in the same order as N whole forwards would (tested equal).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import numpy as np

import ncood
from ncood.host.network import Batches, Network

if TYPE_CHECKING:  # torch loads when a scorer runs: listing plugins stays light
    import torch

MODES = ("mean", "var")


def dropout_modules(module: torch.nn.Module) -> list[torch.nn.Module]:
    import torch

    return [m for m in module.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]


@contextlib.contextmanager
def dropout_active(network: Network):
    """The network's own dropout modules on during the block; every module's train/eval mode
    as it was afterwards."""
    modes = [(m, m.training) for m in network.module.modules()]
    try:
        for module in dropout_modules(network.module):
            module.train()
        yield
    finally:
        for module, training in modes:
            module.train(training)


def rng_devices(device: torch.device) -> list[int]:
    import torch

    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


class MCDropout:
    """Mean or spread of the softmax over ``samples`` dropout forwards; no fit."""

    def __init__(self, samples: int = 30, mode: str = "mean", p: float = 0.5, seed: int = 0):
        if mode not in MODES:
            raise ValueError(f"mcd.mode must be one of {', '.join(MODES)}, got {mode!r}")
        if samples < (2 if mode == "var" else 1):
            raise ValueError(f"mcd.samples must be at least {2 if mode == 'var' else 1}")
        if not 0 <= p < 1:
            raise ValueError(f"mcd.p must be in [0, 1), got {p}")
        self.samples, self.mode, self.p, self.seed = samples, mode, p, seed

    def fit(self, network: Network, train: Batches) -> None:
        return None

    def summary(self, probs: torch.Tensor) -> torch.Tensor:
        """samples × N × C softmax outputs → N scores."""
        if self.mode == "mean":
            return probs.mean(dim=0).max(dim=1).values
        return -probs.var(dim=0, correction=1).mean(dim=1)

    def score(self, network: Network, split: Batches) -> np.ndarray:
        import torch

        scores = []
        with torch.random.fork_rng(devices=rng_devices(network.device)):
            torch.manual_seed(self.seed)
            if dropout_modules(network.module):
                with dropout_active(network), torch.no_grad():
                    for inputs, _ in split:
                        probs = [
                            torch.softmax(network.logits(inputs).double(), dim=1)
                            for _ in range(self.samples)
                        ]
                        scores.append(self.summary(torch.stack(probs)).cpu())
            else:
                with torch.no_grad():
                    for inputs, _ in split:
                        scores.append(self.summary(self.head_samples(network, inputs)).cpu())
        return torch.cat(scores).numpy() if scores else np.zeros(0)

    def head_samples(self, network: Network, inputs: torch.Tensor) -> torch.Tensor:
        """samples × N × C softmax of the head on dropped-out copies of its input."""
        import torch
        import torch.nn.functional as F

        head = network.submodule(network.head_name)
        seen: list[torch.Tensor] = []
        handle = head.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
        try:
            network.logits(inputs)
        finally:
            handle.remove()
        features = seen[-1]
        return torch.stack(
            [
                torch.softmax(head(F.dropout(features, self.p, training=True)).double(), dim=1)
                for _ in range(self.samples)
            ]
        )


@ncood.hookimpl
def register_model_scorers(register):
    register(
        "mcd",
        MCDropout,
        "mean (or negated variance) of the softmax over dropout forwards (through the network)",
        title="MC dropout",
        family="model",
    )
