"""Every import path ncood had before its core was grouped by concern still works (issue 20).

Plugin authors and notebooks import deep paths (``from ncood.stats import train_moments``); an
old path must give the very module at its new place, so that an object and a ``monkeypatch``
are the same under either name, and must stay lazy: ``import ncood`` loads none of them.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import ncood

OLD_PATHS = Path(ncood.__file__).parent / "_old_paths"
MOVED = {
    "ncood.features": "ncood.store.features",
    "ncood.mapped": "ncood.store.mapped",
    "ncood.chunked": "ncood.store.chunked",
    "ncood.tensor_header": "ncood.store.tensor_header",
    "ncood.scores_file": "ncood.store.scores_file",
    "ncood.arrays_file": "ncood.store.arrays_file",
    "ncood.atomic": "ncood.store.atomic",
    "ncood.integrity": "ncood.store.integrity",
    "ncood.outputs": "ncood.store.outputs",
    "ncood.run": "ncood.store.run",
    "ncood.run_schema": "ncood.store.run_schema",
    "ncood.results_schema": "ncood.store.results_schema",
    "ncood.result_merge": "ncood.store.result_merge",
    "ncood.run_cleanup": "ncood.store.run_cleanup",
    "ncood.plugin_output": "ncood.store.plugin_output",
    "ncood.stats": "ncood.maths.stats",
    "ncood.collapse": "ncood.maths.collapse",
    "ncood.hookspecs": "ncood.host.hookspecs",
    "ncood.registry": "ncood.host.registry",
    "ncood.plugins": "ncood.host.loading",
    "ncood.scoring": "ncood.host.scoring",
    "ncood.conventions": "ncood.ood.conventions",
    "ncood.bootstrap": "ncood.ood.bootstrap",
    "ncood.delong": "ncood.ood.delong",
    "ncood.multiple_testing": "ncood.ood.multiple_testing",
    "ncood.ood_groups": "ncood.ood.groups",
    "ncood.ood_statistics": "ncood.ood.statistics",
    "ncood.tuning": "ncood.ood.tuning",
    "ncood.analysis": "ncood.analyze.driver",
}
# Names the docs, the README and the example plugin import from an old path.
DOCUMENTED = [
    ("ncood.stats", "train_moments"),
    ("ncood.stats", "logit_summary"),
    ("ncood.chunked", "map_rows"),
    ("ncood.features", "Head"),
    ("ncood.features", "Split"),
    ("ncood.features", "FeatureDump"),
    ("ncood.features", "load_features"),
    ("ncood.conventions", "ood_metrics"),
    ("ncood.analysis", "analyse_dump"),
    ("ncood.integrity", "verify_run"),
    ("ncood.plugins", "host"),
    ("ncood.plugins", "PluginHost"),
    ("ncood.hookspecs", "hookimpl"),
    ("ncood.delong", "rankdata"),
    ("ncood.models.registry", "ModelRegistry"),
]


def test_the_table_is_every_old_path():
    assert {f"ncood.{p.stem}" for p in OLD_PATHS.glob("*.py") if p.stem != "__init__"} == set(MOVED)


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_path_is_the_moved_module(old):
    new = importlib.import_module(MOVED[old])
    assert importlib.import_module(old) is new
    assert sys.modules[old] is new
    parent, _, leaf = old.rpartition(".")
    assert getattr(importlib.import_module(parent), leaf) is new  # ``ncood.features.X`` too


@pytest.mark.parametrize(("module", "name"), DOCUMENTED, ids=lambda v: v)
def test_a_documented_name_is_the_same_object(module, name):
    old = importlib.import_module(module)
    new = importlib.import_module(MOVED.get(module, module))
    assert getattr(old, name) is getattr(new, name)


def test_the_statement_forms_work():
    import ncood.features as features_module
    from ncood import collapse  # noqa: F401  (a plugin's ``from ncood import collapse as m``)
    from ncood.maths import stats
    from ncood.stats import train_moments

    assert train_moments is stats.train_moments
    assert features_module.Split is ncood.Split


def test_import_ncood_loads_no_old_path_and_changes_no_import_machinery():
    moved = sorted({*MOVED, *MOVED.values()} - {"ncood.host.hookspecs"})  # hookimpl: eager
    code = f"""
import sys
hooks = (list(sys.meta_path), list(sys.path_hooks))
import ncood
assert (list(sys.meta_path), list(sys.path_hooks)) == hooks
loaded = set({moved!r}) & set(sys.modules)
assert not loaded, loaded
from ncood.stats import train_moments
import ncood.maths.stats
assert train_moments is ncood.maths.stats.train_moments
"""
    subprocess.run([sys.executable, "-c", code], check=True)
