"""The one name → item registry (timm's ``register_model`` / ``list_models`` shape) that every
hook fills: scorers, analyses, report sections, models, datasets and presets.

A subclass may refuse more names (:class:`ncood.host.model_registry.ModelRegistry` takes families,
``prefix:*``) and resolve names its own way, but adds, lists and looks up through this API.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from typing import Generic, TypeVar

from ncood.errors import NcoodError

T = TypeVar("T")


class Registry(Generic[T]):
    """Items by unique name; an unknown name is a user error that lists the known ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def check_name(self, name: object) -> None:
        """A ValueError if ``name`` may not be registered here (whatever is registered)."""
        if not name or not isinstance(name, str):
            raise ValueError(f"a {self.kind} needs a non-empty string name, got {name!r}")

    def add(self, name: str, item: T) -> T:
        self.check_name(name)
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = item
        return item

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            raise NcoodError(f"unknown {self.kind} {name!r} (known: {known})") from None

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell pattern (``"*resnet*"``), sorted."""
        return sorted(n for n in self._items if fnmatch.fnmatchcase(n, pattern))

    def items(self) -> list[tuple[str, T]]:
        return [(n, self._items[n]) for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
