"""Monte-Carlo dropout (Gal & Ghahramani, ICML 2016), as pytorch-ood's ``MCD``: N forwards
with dropout active, the softmax of each in float64.

``mean``: max_c mean_n p_n,c. ``var``: −mean_c var_n p_n,c (Bessel's N − 1; ID samples vary
less, hence the minus). Only the dropout modules go to train mode (BatchNorm keeps its running
statistics), and every module's mode is put back afterwards, even on error. A network without
any dropout module (ncood's ResNet-18, torchvision's ResNets) gets dropout of rate ``p`` on the
input of its head instead; with dropout modules present, ``p`` is unused.

The draws come from a forked RNG (the caller's is untouched), reseeded for each chunk of
``CHUNK`` consecutive images of a split from ``seed`` and the chunk's index: the network runs
on those chunks whatever ``--batch-size`` says, so an image's masks, and its score, depend on
the seed and its place in the split only, never on how the images were batched.

With dropout on the head's input only, everything before the head gives the same output at
each of the N forwards: the network runs once per chunk and only the head is sampled N times,
drawing the same masks in the same order as N whole forwards would (tested equal).

``samples`` is at most ``MAX_SAMPLES`` (the work grows with it: a mistyped 10⁹ would run for
hours without a word), ``seed`` in [0, 2⁶³ − 1], and ``mode=var`` with ``p = 0`` is refused
(no dropout, no spread: every score would be 0).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

import ncood
from ncood.host.network import Batches, Network
from ncood.host.scoring import Fraction, check_seed

if TYPE_CHECKING:  # torch loads when a scorer runs: listing plugins stays light
    import torch

MODES = ("mean", "var")
CHUNK = 32  # images per draw of masks (and per forward), whatever the batch size
MAX_SAMPLES = 1_000  # forwards per image: the work grows with it


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


def fixed_chunks(split: Batches, size: int) -> Iterator[torch.Tensor]:
    """The split's inputs regrouped into runs of ``size`` consecutive images (the last one
    shorter), whatever the size of its batches."""
    import torch

    held: list[torch.Tensor] = []
    count = 0
    for inputs, _ in split:
        held.append(inputs)
        count += int(inputs.shape[0])
        while count >= size:
            joined = torch.cat(held) if len(held) > 1 else held[0]
            yield joined[:size]
            held = [joined[size:]] if count > size else []
            count -= size
    if count:
        yield torch.cat(held)


def chunk_seed(seed: int, index: int) -> int:
    """The seed of the ``index``-th chunk of a split: a hash of both (SeedSequence)."""
    return int(np.random.SeedSequence((seed, index)).generate_state(1, np.uint64)[0])


def rng_devices(device: torch.device) -> list[int]:
    import torch

    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


class MCDropout(ncood.Scorer):
    """Mean or spread of the softmax over ``samples`` dropout forwards; no fit."""

    needs_network = True

    def __init__(self, samples: int = 30, mode: str = "mean", p: Fraction = 0.5, seed: int = 0):
        if mode not in MODES:
            raise ValueError(f"mcd.mode must be one of {', '.join(MODES)}, got {mode!r}")
        least = 2 if mode == "var" else 1
        if not least <= samples <= MAX_SAMPLES:
            raise ValueError(f"mcd.samples must be in [{least}, {MAX_SAMPLES}], got {samples}")
        if not 0 <= p < 1:
            raise ValueError(f"mcd.p must be in [0, 1), got {p}")
        if mode == "var" and p == 0:
            raise ValueError("mcd.p = 0 with mcd.mode=var drops nothing: every score would be 0")
        check_seed("mcd.seed", seed)
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

        own = bool(dropout_modules(network.module))
        sampled = self.whole_samples if own else self.head_samples
        scores = []
        with (
            torch.random.fork_rng(devices=rng_devices(network.device)),
            dropout_active(network) if own else contextlib.nullcontext(),
            torch.no_grad(),
        ):
            for index, inputs in enumerate(fixed_chunks(split, CHUNK)):
                torch.manual_seed(chunk_seed(self.seed, index))
                scores.append(self.summary(sampled(network, inputs)).cpu())
        return torch.cat(scores).numpy() if scores else np.zeros(0)

    def whole_samples(self, network: Network, inputs: torch.Tensor) -> torch.Tensor:
        """samples × N × C softmax of whole forwards through the network's own dropout."""
        import torch

        probs = [torch.softmax(network.logits(inputs).double(), dim=1) for _ in range(self.samples)]
        return torch.stack(probs)

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
def register_scorers(register):
    register(
        "mcd",
        MCDropout,
        "mean (or negated variance) of the softmax over dropout forwards (through the network)",
        title="MC dropout",
        family="model",
    )
