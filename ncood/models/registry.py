"""Model builders by name, contributed by plugins through ``register_models(register)``.

A name is exact (``resnet18-cifar``) or a family ending in ``:*`` (``torchvision:*``), whose
builder receives what follows the colon. A name no plugin claims but shaped like
``package.module:callable`` is imported from the user's own code. Builders are called as
``builder(num_classes=C, **kwargs)`` (a family's as ``builder(variant, num_classes=C, ...)``)
and return a ``torch.nn.Module`` whose forward gives the logits. A model recorded in a run's
files is rebuilt through :func:`rebuild_recorded`, which never lets those files choose code.
"""

from __future__ import annotations

from typing import Any

from ncood.host.model_records import check_recorded, rebuild_recorded
from ncood.host.model_registry import FAMILY_SUFFIX, ModelEntry, ModelRegistry

__all__ = [
    "FAMILY_SUFFIX",
    "ModelEntry",
    "ModelRegistry",
    "check_recorded",
    "create_model",
    "list_models",
    "rebuild_recorded",
]


def model_registry() -> ModelRegistry:
    """Every architecture the loaded plugins register."""
    from ncood.host.loading import host

    return host().models()


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a glob (``"torchvision:*"``, ``"*resnet*"``)."""
    return model_registry().names(pattern)


def create_model(name: str, num_classes: int, **kwargs: Any):
    """Build the named architecture, e.g. ``create_model("torchvision:resnet50", 100)``."""
    return model_registry().create(name, num_classes, **kwargs)
