"""ncood: Neural Collapse and out-of-distribution detection, from training to report.

The public Python API (docs/plugins.md, "Python API"); everything else stays importable but is
internal. Names load on first use (PEP 562), so ``import ncood`` — which every plugin does for
``hookimpl`` — imports neither numpy nor torch.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

from ncood.errors import NcoodError
from ncood.host.hookspecs import hookimpl

try:
    __version__ = version("ncood")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

# name → the module that defines it
_LAZY = {
    "load_features": "ncood.store.features",
    "save_features": "ncood.store.features",
    "FeatureDump": "ncood.store.features",
    "Split": "ncood.store.features",
    "Head": "ncood.store.features",
    "ood_metrics": "ncood.ood.conventions",
    "ReportSection": "ncood.report.context",
    "Scorer": "ncood.host.scoring",
    "list_scorers": "ncood.api",
    "list_analyses": "ncood.api",
    "create_scorer": "ncood.api",
    "create_analysis": "ncood.api",
    "evaluate": "ncood.api",
    "open_run": "ncood.api",
    "extract": "ncood.extraction.api",
    "list_models": "ncood.models.registry",
    "create_model": "ncood.models.registry",
}

# submodules reached as attributes: ``ncood.testing.check_scorer`` after a bare ``import ncood``
_SUBMODULES = ("testing",)

__all__ = ["__version__", "hookimpl", "NcoodError", *_LAZY]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return import_module(f"ncood.{name}")  # the import system binds it as an attribute
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ncood' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # the next access skips this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))
