"""Penultimate features of any model: the input of its final ``nn.Linear``, caught by a hook.

ncood's analyses assume ``logits = features @ W.T + b`` with the head ``(W, b)`` stored beside
the features. :func:`check_affine` verifies it on the first batch, so a model whose head is not
that affine map (a final activation, a temperature, a second head) is refused with the reason
instead of giving scores that silently mean something else.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ncood.errors import NcoodError

AFFINE_TOLERANCE = 1e-4  # max |features @ W.T + b − logits| / max |logits|


@dataclass(frozen=True)
class HeadChoice:
    """Where the features are read, and the linear head that maps them to the logits."""

    head_name: str
    head: nn.Linear
    feature_name: str  # the module whose input (the head) or output (another module) is read

    @property
    def reads_head_input(self) -> bool:
        return self.feature_name == self.head_name

    def describe(self) -> str:
        if self.reads_head_input:
            return f"input of {self.head_name}"
        return f"output of {self.feature_name}"


def final_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """The last ``nn.Linear`` in the module tree: the classifier of every usual network."""
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise NcoodError(
            f"{type(model).__name__} has no nn.Linear: ncood needs a linear classifier head "
            f"(logits = features @ W.T + b) to store beside the features"
        )
    return found[-1]


def choose_head(model: nn.Module, feature_layer: str | None = None) -> HeadChoice:
    """The final linear head, and the named ``feature_layer`` if one is given.

    Naming an ``nn.Linear`` makes it the head (its input is the features); naming another
    module reads its output, flattened, as the input of the final linear head.
    """
    head_name, head = final_linear(model)
    if feature_layer is None:
        return HeadChoice(head_name, head, head_name)
    modules = dict(model.named_modules())
    if feature_layer not in modules:
        close = [n for n in modules if n and (feature_layer in n or n in feature_layer)][:5]
        hint = f" (close: {', '.join(close)})" if close else ""
        raise NcoodError(f"--feature-layer {feature_layer!r} is not a module of the model{hint}")
    chosen = modules[feature_layer]
    if isinstance(chosen, nn.Linear):
        return HeadChoice(feature_layer, chosen, feature_layer)
    return HeadChoice(head_name, head, feature_layer)


def head_tensors(head: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W, b)`` as float32 on the CPU; a head without bias has b = 0."""
    weight = head.weight.detach().float().cpu()
    bias = head.bias.detach().float().cpu() if head.bias is not None else None
    return weight, bias if bias is not None else torch.zeros(weight.shape[0])


class FeatureTap:
    """Hooks that record the features of each forward; use as a context manager."""

    def __init__(self, model: nn.Module, choice: HeadChoice) -> None:
        self.model = model
        self.choice = choice
        self.features: torch.Tensor | None = None
        self.calls = 0
        self._handles: list = []

    def __enter__(self) -> FeatureTap:
        if self.choice.reads_head_input:
            hook = self.choice.head.register_forward_pre_hook(self._pre_hook)
        else:
            module = dict(self.model.named_modules())[self.choice.feature_name]
            hook = module.register_forward_hook(self._post_hook)
        self._handles.append(hook)
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _pre_hook(self, module, inputs) -> None:
        self._keep(inputs[0])

    def _post_hook(self, module, inputs, output) -> None:
        self._keep(output)

    def _keep(self, value) -> None:
        self.calls += 1
        if isinstance(value, torch.Tensor):
            self.features = value.detach()

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features N×D, logits N×C)`` of one batch."""
        self.calls, self.features = 0, None
        output = self.model(batch)
        logits = _logits_of(output)
        where = self.choice.describe()
        if self.calls == 0 or self.features is None:
            raise NcoodError(f"the {where} never ran (or gave no tensor) in the model's forward")
        if self.calls > 1:
            raise NcoodError(
                f"the {where} ran {self.calls} times in one forward: ncood cannot tell which "
                f"call gives the features; name the layer with --feature-layer"
            )
        features = self.features.reshape(self.features.shape[0], -1)
        if features.shape[0] != logits.shape[0]:
            raise NcoodError(
                f"the {where} has {features.shape[0]} rows for a batch of {logits.shape[0]}"
            )
        return features, logits


def _logits_of(output) -> torch.Tensor:
    if isinstance(output, torch.Tensor) and output.ndim == 2:
        return output
    shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
    raise NcoodError(
        f"the model's forward returned {shape}, not N×C logits; wrap it so that forward "
        f"returns the logits tensor"
    )


def check_affine(features: torch.Tensor, logits: torch.Tensor, choice: HeadChoice) -> float:
    """Refuse unless ``features @ W.T + b`` gives the logits (relative max error, float64)."""
    weight, bias = head_tensors(choice.head)
    where = choice.describe()
    if logits.shape[1] != weight.shape[0]:
        raise NcoodError(
            f"the model returns {logits.shape[1]} logits but its final linear layer "
            f"{choice.head_name!r} has {weight.shape[0]} outputs: it is not the classifier head"
        )
    if features.shape[1] != weight.shape[1]:
        raise NcoodError(
            f"the {where} has {features.shape[1]} values per image but the head "
            f"{choice.head_name!r} takes {weight.shape[1]}"
        )
    predicted = features.double().cpu() @ weight.double().T + bias.double()
    actual = logits.double().cpu()
    scale = max(float(actual.abs().max()), 1e-12)
    error = float((predicted - actual).abs().max()) / scale
    if not error <= AFFINE_TOLERANCE:  # also refuses NaN
        raise NcoodError(
            f"the logits are not features @ W.T + b of {choice.head_name!r} (relative error "
            f"{error:.2g} on the first batch, tolerance {AFFINE_TOLERANCE:g}): something runs "
            f"after the linear head (an activation, a scale, another layer); ncood's scorers "
            f"need the raw affine head, so point --feature-layer at the layer whose input is "
            f"the penultimate feature, or wrap the model so that forward ends with that layer"
        )
    return error
