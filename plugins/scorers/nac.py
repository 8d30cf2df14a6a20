"""NAC-UE (Liu et al., ICLR 2024; the authors' code, BierOne/ood_coverage, as merged in OpenOOD
v1.5): how well ID train covers the state each neuron takes on a sample.

A neuron's state is ŝ = sigmoid(α · o · ∂L/∂o), o its output and L = Σ_c −(1/C) log p_c the
cross-entropy of the softmax to the uniform distribution (KL(u ‖ p) up to a constant); a map's
o and ∂L/∂o are each summed over the positions first (the authors' pooling). Fit: on a balanced
subset of ID train, each neuron's histogram of ŝ over M − 1 intervals. Coverage of an interval:
min(count / O, 1). Score: the coverage of the interval a sample's state falls in, averaged over
the neurons of a layer, then over the layers (higher = more ID). States are float64.

Bins ``authors``: the authors' edges, dense around 0.5 (``logspace`` of their coverage.py);
``geometric``: pytorch-ood's ``NACUE``, M intervals dense near 0 and 1. With ``geometric`` on
the penultimate layer alone this is pytorch-ood's detector (tested equal).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

import ncood
from ncood.errors import NcoodError
from ncood.host.network import Batches, Network
from ncood.host.scoring import check_seed

if TYPE_CHECKING:  # torch loads when a scorer runs: listing plugins stays light
    import torch

PENULTIMATE = "penultimate"  # the head's input, the features file's features
BINS = ("authors", "geometric")
GEOMETRIC_EPS = 1e-6  # pytorch-ood's clamp of the states for its geometric edges
AUTHORS_LAYERS = 4
# The authors' values for ResNet-18 on CIFAR-10 (configs/postprocessors/nac/resnet/
# nac_cifar10.yml), for avgpool, layer3, layer2, layer1 in that order.
DEFAULTS = {"M": "50,500,50,500", "O": "50,100,5,100", "alpha": "100,1000,0.001,0.001"}
MAX_BINS = 100_000  # per neuron: the histograms are neurons × M integers


def authors_edges(m: int) -> np.ndarray:
    """The M edges of the authors' ``logspace(1e3, M)``: log₁₀₀₀ of a linspace on [1, √1000]
    (0 … 0.5), mirrored onto 0.5 … 1, the last edge 1.01, then 1.2."""
    x = np.linspace(1.0, np.sqrt(1e3), num=m // 2)
    left = np.log(x) / np.log(1e3)
    edges = np.concatenate([left[:-1], (1.0 - left)[::-1]])
    edges[-1] += 1e-2
    return np.append(edges, 1.2)


def geometric_edges(m: int) -> np.ndarray:
    """pytorch-ood's M + 1 edges: geometric from 1e-6 to 0.5, mirrored onto 0.5 … 1 − 1e-6."""
    left = np.logspace(np.log10(GEOMETRIC_EPS), np.log10(0.5), m // 2 + 1)
    return np.concatenate([left, (1.0 - left[::-1])[1:]])


def bin_index(states: np.ndarray, edges: np.ndarray, bins: str) -> np.ndarray:
    """Each state's interval, −1 where it falls in none (``authors``: [e_i, e_{i+1}))."""
    if bins == "geometric":  # (e_i, e_{i+1}], clamped into the M intervals, as bucketize − 1
        clamped = np.clip(states, GEOMETRIC_EPS, 1 - GEOMETRIC_EPS)
        index = np.searchsorted(edges, clamped, side="left") - 1
        return np.clip(index, 0, len(edges) - 2)
    index = np.searchsorted(edges, states, side="right") - 1
    index[(index < 0) | (index >= len(edges) - 1)] = -1
    return index


def balanced_subset(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """The authors' ``TrainSubset``: int(count / classes) images of each class present (at most
    the smallest class's size), the first of its indices shuffled by RandomState(seed)."""
    classes = [c for c in np.unique(labels) if c >= 0]
    if not classes:
        raise NcoodError("nac: ID train has no labelled images to build the coverage from")
    groups = [np.flatnonzero(labels == c) for c in classes]
    each = min(int(count / len(classes)), min(len(g) for g in groups))
    if each == 0:
        raise NcoodError(
            f"nac.fit_images = {count} leaves no image per class ({len(classes)} classes): "
            f"give at least {len(classes)}"
        )
    chosen = []
    for group in groups:
        order = list(group)
        np.random.RandomState(seed).shuffle(order)
        chosen.extend(order[:each])
    return np.sort(np.asarray(chosen, dtype=np.int64))


def parse_list(name: str, raw: str, kind: type) -> list:
    try:
        values = [kind(v) for v in raw.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"nac.{name} must be numbers separated by commas, got {raw!r}") from None
    if not values:
        raise ValueError(f"nac.{name} gives no value")
    return values


def per_layer(name: str, values: list, count: int, auto: bool) -> list:
    """One value for every layer, or one per layer (the first ones where the layers are
    chosen by default: fewer stages than the authors' four)."""
    if len(values) == 1:
        return values * count
    if len(values) == count or (auto and len(values) > count):
        return values[:count]
    raise NcoodError(
        f"nac.{name} gives {len(values)} values for {count} layers: give one, or one per layer"
    )


def default_layers(network: Network) -> list[str]:
    """The authors' choice for a ResNet (avgpool, layer3, layer2, layer1): the head's input,
    then each stage but the last, from the output backwards; four at most."""
    return [PENULTIMATE, *reversed(network.stages[:-1])][:AUTHORS_LAYERS]


class NeuronCoverage(ncood.Scorer):
    """Mean coverage, by ID train, of each neuron's gradient-weighted state; fitted."""

    needs_network = True

    def __init__(
        self,
        layers: str = "",
        M: str = DEFAULTS["M"],
        O: str = DEFAULTS["O"],  # noqa: E741 (the paper's name)
        alpha: str = DEFAULTS["alpha"],
        bins: str = "authors",
        fit_images: int = 1000,
        seed: int = 1,
    ) -> None:
        self.named = [name.strip() for name in layers.split(",") if name.strip()]
        if bins not in BINS:
            raise ValueError(f"nac.bins must be one of {', '.join(BINS)}, got {bins!r}")
        self.values = {
            "M": parse_list("M", M, int),
            "O": parse_list("O", O, int),
            "alpha": parse_list("alpha", alpha, float),
        }
        least = 4 if bins == "authors" else 2
        for m in self.values["M"]:
            if not least <= m <= MAX_BINS or (bins == "authors" and m % 2):
                even = " and even (the authors' edges)" if bins == "authors" else ""
                raise ValueError(f"nac.M must be in [{least}, {MAX_BINS}]{even}, got {m}")
        if any(o < 1 for o in self.values["O"]):
            raise ValueError(f"nac.O must be 1 or more, got {O}")
        if not all(a > 0 and np.isfinite(a) for a in self.values["alpha"]):
            raise ValueError(f"nac.alpha must be positive, got {alpha}")
        # the defaults are per position (the authors' four layers): their first ones serve
        # fewer layers; a list given explicitly must fit the layers named
        self.given = {k for k, raw in (("M", M), ("O", O), ("alpha", alpha)) if raw != DEFAULTS[k]}
        if self.named:
            for key in self.given:
                per_layer(key, self.values[key], len(self.named), auto=False)  # before any work
        if fit_images < 0:
            raise ValueError(f"nac.fit_images must be 0 (all) or more, got {fit_images}")
        check_seed("nac.seed", seed)
        self.bins, self.fit_images, self.seed = bins, fit_images, seed

    def resolve(self, network: Network) -> None:
        """The layers and each one's M, O, α and edges, for this network."""
        self.layers = self.named or default_layers(network)
        for name in self.layers:
            if name != PENULTIMATE:
                network.submodule(name)  # its one-line error, with close names
        count = len(self.layers)
        chosen = {
            key: per_layer(key, values, count, auto=not self.named or key not in self.given)
            for key, values in self.values.items()
        }
        self.M, self.O, self.alpha = chosen["M"], chosen["O"], chosen["alpha"]
        make = geometric_edges if self.bins == "geometric" else authors_edges
        self.edges = [make(m) for m in self.M]

    def states(self, network: Network, inputs: torch.Tensor) -> list[np.ndarray]:
        """Per layer, the B × neurons float64 states sigmoid(α · o · ∂L/∂o)."""
        import torch

        modules = [name for name in self.layers if name != PENULTIMATE]
        with (
            torch.inference_mode(False),
            torch.enable_grad(),
            network.capture(modules) as seen,
        ):
            x = inputs.detach().clone().requires_grad_()
            features, logits = network.penultimate(x)
            outputs = [features if n == PENULTIMATE else seen[n] for n in self.layers]
            for name, output in zip(self.layers, outputs, strict=True):
                if not isinstance(output, torch.Tensor) or output.ndim not in (2, 4):
                    raise NcoodError(f"nac: layer {name!r} gives no N × D or N × C × H × W tensor")
            loss = -torch.log_softmax(logits, dim=1).mean(dim=1).sum()
            grads = torch.autograd.grad(loss, outputs)
        states = []
        for output, grad, alpha in zip(outputs, grads, self.alpha, strict=True):
            o, g = output.detach().double(), grad.double()
            if o.ndim == 4:  # the authors' pooling: each summed over the positions
                o, g = o.sum(dim=(2, 3)), g.sum(dim=(2, 3))
            states.append(torch.sigmoid(alpha * o * g).cpu().numpy())
        return states

    def fit(self, network: Network, train: Batches) -> None:
        import torch

        self.resolve(network)
        labels = np.asarray(train.labels)
        if self.fit_images:
            chosen = balanced_subset(labels, self.fit_images, self.seed)
        else:
            chosen = np.flatnonzero(labels >= 0)
        wanted = np.zeros(len(labels), dtype=bool)
        wanted[chosen] = True
        self.counts: list[np.ndarray] | None = None
        start = 0
        for inputs, batch_labels in train:
            rows = wanted[start : start + len(batch_labels)]
            start += len(batch_labels)
            if not rows.any():
                continue
            picked = inputs[torch.from_numpy(rows).to(inputs.device)]
            for layer, states in enumerate(self.states(network, picked)):
                if self.counts is None:
                    self.counts = [None] * len(self.layers)
                if self.counts[layer] is None:
                    self.counts[layer] = np.zeros(
                        (states.shape[1], len(self.edges[layer]) - 1), np.int64
                    )
                index = bin_index(states, self.edges[layer], self.bins)
                neurons = np.broadcast_to(np.arange(states.shape[1]), index.shape)
                inside = index >= 0
                np.add.at(self.counts[layer], (neurons[inside], index[inside]), 1)
        if self.counts is None:
            raise NcoodError("nac: ID train gave no image to build the coverage from")
        self.capped = [np.minimum(c, o) for c, o in zip(self.counts, self.O, strict=True)]
        self.resolved_params = {
            "layers": self.layers,
            "M": self.M,
            "O": self.O,
            "alpha": self.alpha,
            "fitted_on": int(len(chosen)),
        }

    def score(self, network: Network, split: Batches) -> np.ndarray:
        """Each layer's Σ_n min(count, O) summed in integers, then divided once: samples whose
        states fall in equally covered intervals tie exactly, whatever the neurons' order."""
        scores = []
        for inputs, _ in split:
            total = np.zeros(inputs.shape[0])
            for layer, states in enumerate(self.states(network, inputs)):
                index = bin_index(states, self.edges[layer], self.bins)
                neurons = np.broadcast_to(np.arange(states.shape[1]), index.shape)
                covered = self.capped[layer][neurons, np.maximum(index, 0)]
                hits = np.where(index >= 0, covered, 0).sum(axis=1)
                total += hits / (self.O[layer] * states.shape[1])
            scores.append(total / len(self.layers))
        return np.concatenate(scores) if scores else np.zeros(0)


@ncood.hookimpl
def register_scorers(register):
    register(
        "nac",
        NeuronCoverage,
        "mean coverage by ID train of the neurons' gradient-weighted states (through the network)",
        title="NAC-UE",
        family="model",
    )
