"""Calls into plugin code, guarded one way wherever they happen.

Whatever a plugin's code raises (an error, ``sys.exit``, anything) costs only that plugin and
reads as one line (:func:`describe`); Ctrl-C always passes, and so does what the caller says
it reports itself (a user error, a full disk). The loader, the analysis driver, the tuning and
the report call plugin code through :func:`call_plugin`, never with an ``except`` of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ncood.errors import NcoodError, one_line


@dataclass(frozen=True)
class Called:
    """What a call into plugin code gave: its value, or the error that it raised."""

    value: Any = None
    error: BaseException | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def reason(self) -> str:
        return describe(self.error) if self.error is not None else ""


def call_plugin(
    call: Callable[..., Any],
    *args: Any,
    passes: tuple[type[BaseException], ...] | Callable[[BaseException], bool] = (),
    **kwargs: Any,
) -> Called:
    """``call(*args, **kwargs)``, one plugin's code; an error becomes the :class:`Called`'s
    ``error``, except Ctrl-C and what ``passes`` names (types, or a test of the error)."""
    try:
        return Called(call(*args, **kwargs))
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        if isinstance(passes, tuple) and isinstance(exc, passes):
            raise
        if callable(passes) and not isinstance(passes, tuple) and passes(exc):
            raise
        return Called(error=exc)


def describe(exc: BaseException) -> str:
    """One line for what a plugin raised: a user error's message, else the type and message
    (``sys.exit`` from a plugin reads as such, not as an exit of ncood)."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r})"
    if isinstance(exc, NcoodError):
        return str(exc)
    text = one_line(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
