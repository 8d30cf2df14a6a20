"""ncood: Neural Collapse and out-of-distribution detection, from training to report."""

from importlib.metadata import PackageNotFoundError, version

from ncood.hookspecs import hookimpl

try:
    __version__ = version("ncood")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

__all__ = ["__version__", "hookimpl"]
