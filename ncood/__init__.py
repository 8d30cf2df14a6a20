"""ncood: Neural Collapse and out-of-distribution detection, from training to report."""

from importlib.metadata import PackageNotFoundError, version

from ncood.hookspecs import hookimpl

try:
    __version__ = version("ncood")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

# The public functions load their modules (torch, numpy) on first use: `import ncood`, which
# every plugin does for `hookimpl`, stays cheap (PEP 562).
_LAZY = {
    "extract": "ncood.extraction.api",
    "list_models": "ncood.models.registry",
    "create_model": "ncood.models.registry",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ncood' has no attribute {name!r}")


__all__ = ["__version__", "create_model", "extract", "hookimpl", "list_models"]
