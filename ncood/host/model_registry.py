"""The registry of model builders that ``register_models`` hooks fill (see
ncood.models.registry): the one registry type (ncood.host.registry), with families.

A name is exact (``resnet18-cifar``) or a family ending in ``:*`` (``torchvision:*``), whose
builder receives what follows the colon. A name no plugin claims but shaped like
``package.module:callable`` is imported from the user's own code (only when the user names it:
a name a run's files record goes through ncood.host.model_records). Builders are called as
``builder(num_classes=C, **kwargs)`` (a family's as ``builder(variant, num_classes=C, ...)``)
and return a ``torch.nn.Module`` whose forward gives the logits. It lives in the plugin host,
which fills it, so that the host never imports the layer above it (ncood.models).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ncood.errors import NcoodError, one_line
from ncood.host.registry import Registry

FAMILY_SUFFIX = ":*"
_USER_CODE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., Any]
    description: str = ""
    plugin: str = ""

    def __post_init__(self) -> None:
        if not callable(self.builder):
            raise ValueError(f"model {self.name!r}: the builder {self.builder!r} is not callable")

    @property
    def family(self) -> bool:
        return self.name.endswith(FAMILY_SUFFIX)


class ModelRegistry(Registry[ModelEntry]):
    """What ``register_models`` hooks registered: the one registry type, whose names may also
    be families (``prefix:*``) and which resolves a name to a builder and its variant."""

    def __init__(self, kind: str = "model") -> None:
        super().__init__(kind)

    def check_name(self, name: object) -> None:
        if not isinstance(name, str):
            raise ValueError(f"a model needs a string name, got {name!r}")
        base = name.removesuffix(FAMILY_SUFFIX)
        if not base or "*" in base or (base != name and ":" in base):
            raise ValueError(f"model {name!r}: give a name, or a family as 'prefix:*'")

    def register(
        self, name: str, builder: Callable[..., Any], description: str = "", *, plugin: str = ""
    ) -> ModelEntry:
        """``add`` of the entry the ``register_models`` hook's arguments describe."""
        return self.add(name, ModelEntry(name, builder, description, plugin))

    def registered(self, name: str) -> tuple[ModelEntry, str | None] | None:
        """The entry a plugin registered for ``name`` (and a family's variant); None if none.
        Imports nothing: a name a plugin claims never reaches :func:`importlib`."""
        entry = self._items.get(name)
        if entry is not None and not entry.family:
            return entry, None
        prefix, colon, variant = name.partition(":")
        family = self._items.get(prefix + FAMILY_SUFFIX)
        if colon and family is not None:
            if not variant:
                raise NcoodError(f"model {name!r} needs a name after '{prefix}:'")
            return family, variant
        return None

    def is_own_code(self, name: str) -> bool:
        """``name`` reads ``package.module:callable`` and no plugin claims its prefix."""
        prefix = name.partition(":")[0]
        claimed = any(n.startswith(prefix + ":") for n in self._items)
        return bool(_USER_CODE.match(name)) and not claimed

    def resolve(self, name: str) -> tuple[ModelEntry, str | None]:
        """The entry that builds ``name`` and, for a family, the variant it gets; the user's
        own ``package.module:callable`` is imported here."""
        found = self.registered(name)
        if found is not None:
            return found
        if self.is_own_code(name):
            return ModelEntry(name, _import_callable(name), "your own code"), None
        known = ", ".join(self.names()) or "none"
        raise NcoodError(
            f"unknown model {name!r} (known: {known}; or package.module:callable for your own)"
        )

    def create(self, name: str, num_classes: int, **kwargs: Any):
        """Build ``name`` for ``num_classes`` classes; a failing builder is one line."""
        import torch

        entry, variant = self.resolve(name)
        args = () if variant is None else (variant,)
        try:
            model = entry.builder(*args, num_classes=num_classes, **kwargs)
        except NcoodError:
            raise
        except Exception as exc:  # a builder's own error, said in one line
            raise NcoodError(f"building model {name!r} failed: {one_line(exc)}") from None
        if not isinstance(model, torch.nn.Module):
            raise NcoodError(
                f"model {name!r}: the builder returned {type(model).__name__}, "
                f"not a torch.nn.Module"
            )
        return model


def _import_callable(name: str) -> Callable[..., Any]:
    module_name, _, attribute = name.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise NcoodError(f"model {name!r}: cannot import {module_name!r} ({exc})") from None
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise NcoodError(f"model {name!r}: {module_name!r} has no {attribute!r}") from None
    if not callable(target):
        raise NcoodError(f"model {name!r}: {attribute!r} is not callable")
    return target
