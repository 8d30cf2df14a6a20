"""What a network scorer receives: the run's network and its data, batch by batch.

A scorer whose ``needs_network`` is true (:class:`ncood.host.scoring.Scorer`) implements::

    fit(network: Network, train: Batches) -> None      # ID train, for those that fit
    score(network: Network, split: Batches) -> (N,)    # higher = more in-distribution

ncood rebuilds the network of the analyzed epoch (a trained run's checkpoint, or an imported
run's weights file), in eval mode, on ``--device``, its forwards in exact fp32 unless
``--precision`` says otherwise. :class:`Batches` yields the images the features file was
extracted from, in the same order and preprocessed the same way, so a model-based scorer's
scores line up with every other scorer's. This module holds types only (torch is imported by
the methods that need it): it is imported when the plugins load.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ncood.errors import NcoodError

if TYPE_CHECKING:
    import numpy as np
    import torch


@dataclass
class Network:
    """A run's classifier at one epoch, ready to run (eval mode, on ``device``)."""

    module: torch.nn.Module  # forward(inputs) -> N×C logits
    device: torch.device
    head_name: str  # the final nn.Linear: logits = features @ W.T + b
    stages: list[str]  # modules whose outputs are the N×C×H×W stage maps, input to output
    input_std: tuple[float, ...]  # per-channel std of the normalization (an input step in pixels)
    arch: str = ""

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """The N×C logits of a batch (gradients flow if the caller enables them)."""
        output = self.module(inputs)
        if getattr(output, "ndim", None) != 2:
            raise NcoodError(f"{self.arch or 'the model'} returned no N×C logits")
        return output

    def penultimate(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The head's input (N×D, the features file's features) and the logits of a batch, in
        one forward (gradients flow if the caller enables them)."""
        seen: list[torch.Tensor] = []
        hook = self.submodule(self.head_name).register_forward_pre_hook(
            lambda _m, args: seen.append(args[0])
        )
        try:
            logits = self.logits(inputs)
        finally:
            hook.remove()
        return seen[-1].flatten(1), logits

    def input_gradient(
        self, inputs: torch.Tensor, loss_of: Callable[[torch.Tensor], torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, ∂loss_of(x)/∂x)`` for a batch ``x`` (a detached copy of ``inputs``), the
        gradient computed here with autograd enabled, so that a scorer called under
        ``no_grad`` or inference mode (as the analysis and user code may be) still gets it."""
        import torch

        with torch.inference_mode(False), torch.enable_grad():
            x = inputs.detach().clone().requires_grad_()
            (gradient,) = torch.autograd.grad(loss_of(x), x)
        return x.detach(), gradient

    def pixel_step(self, step: torch.Tensor) -> torch.Tensor:
        """A step given in [0, 1] pixel units, in the network's normalized input units: each
        channel divided by its normalization std (ODIN's convention, ``pixel_units``)."""
        import torch

        std = torch.tensor(self.input_std, dtype=step.dtype, device=step.device)
        return step / std.view(1, -1, *([1] * (step.ndim - 2)))

    def submodule(self, name: str) -> torch.nn.Module:
        modules = dict(self.module.named_modules())
        if name not in modules:
            close = ", ".join(n for n in modules if n and name in n)[:200]
            raise NcoodError(
                f"the network has no module {name!r}" + (f" (close: {close})" if close else "")
            )
        return modules[name]

    @contextlib.contextmanager
    def capture(self, names: list[str]) -> Iterator[dict[str, torch.Tensor]]:
        """Inside the block, each forward fills the dict with the named modules' outputs."""
        seen: dict[str, Any] = {}
        handles = [
            self.submodule(name).register_forward_hook(
                lambda _m, _i, output, _n=name: seen.__setitem__(_n, output)
            )
            for name in names
        ]
        try:
            yield seen
        finally:
            for handle in handles:
                handle.remove()

    @contextlib.contextmanager
    def replacing(self, name: str, change: Callable[[torch.Tensor], torch.Tensor]):
        """Inside the block, the output of module ``name`` is ``change(output)`` and the rest
        of the network runs on it (RankFeat's rank-1 removal, ASH on the maps)."""
        handle = self.submodule(name).register_forward_hook(lambda _m, _i, out: change(out))
        try:
            yield
        finally:
            handle.remove()


@dataclass
class Batches:
    """One split's images as model-ready batches; iterate as often as needed."""

    name: str  # "train", "test", "ood/<set>"
    count: int
    labels: np.ndarray  # int64, −1 for OOD: the same as the features file's
    produce: Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]] = field(repr=False)
    on_images: Callable[[int], None] | None = field(default=None, repr=False)
    on_start: Callable[[], None] | None = field(default=None, repr=False)  # each pass begins

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(inputs, labels)`` on the network's device, float32 inputs, int64 labels."""
        if self.on_start is not None:
            self.on_start()
        for inputs, labels in self.produce():
            yield inputs, labels
            if self.on_images is not None:
                self.on_images(int(labels.shape[0]))


@dataclass
class ModelInputs:
    """Everything a model-based scorer runs on for one epoch of a run."""

    network: Network
    splits: dict[str, Batches]  # "train", "test", "ood/<set>"
    precision: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    describe: dict[str, Any] = field(default_factory=dict)  # device, precision, weights
