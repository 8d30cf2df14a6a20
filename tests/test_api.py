"""The public API of ``import ncood``, and what importing and running commands costs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import EntryPoint

import numpy as np
import pytest

import ncood
from ncood.analyze.driver import analyze_file, select
from ncood.errors import NcoodError
from ncood.host.loading import Pending, PluginHost, host
from ncood.store.features import save_features


def modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        env={**os.environ, "NCOOD_LOAD_PLUGINS": ""},
        check=True,
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_import_ncood_loads_neither_numpy_nor_torch():
    loaded = modules_after("import ncood\nncood.hookimpl, ncood.NcoodError")
    assert not {m for m in loaded if m.split(".")[0] in ("numpy", "torch", "scipy", "sklearn")}


def test_analyze_imports_only_what_it_uses(tiny_dump, tmp_path):
    path = tmp_path / "f.safetensors"
    save_features(path, tiny_dump)
    loaded = modules_after(
        "from ncood.cli import app\n"
        f"app(['analyze', {str(path)!r}, '--plugins', 'msp,energy', '--out', "
        f"{str(tmp_path / 'out')!r}, '--quiet'], standalone_mode=False)"
    )
    assert (tmp_path / "out" / "results.json").is_file()
    assert "ncood_plugins.scorers.logits" in loaded
    # scipy.special stays: DeLong's p-values take the normal CDF from it
    unused = {"sklearn", "scipy.stats", "scipy.sparse", "scipy.spatial", "scipy.linalg", "torch"}
    unused |= {"matplotlib", "jinja2", "ncood_plugins.sections"}
    assert {m for m in loaded if any(m == u or m.startswith(u + ".") for u in unused)} == set()


def test_listing_plugins_imports_no_torch_and_no_report_library():
    """`ncood plugins` imports every plugin module, the model plugins included: none may pull in
    torch or the report's libraries at import (their builders import them when they build)."""
    loaded = modules_after("from ncood.cli import app\napp(['plugins'], standalone_mode=False)")
    assert "ncood_plugins.models.openood" in loaded and "ncood_plugins.sections.ood" in loaded
    heavy = {"torch", "torchvision", "matplotlib", "jinja2", "sklearn", "scipy"}
    assert {m for m in loaded if m.split(".")[0] in heavy} == set()


def test_every_exported_name_resolves():
    for name in ncood.__all__:
        assert getattr(ncood, name) is not None
    with pytest.raises(AttributeError):
        ncood.no_such_name  # noqa: B018


def test_create_scorer_takes_typed_parameters_and_names_the_known_ones(tiny_dump):
    assert ncood.list_scorers("maha*", needs_network=False) == ["mahalanobis"]
    assert ncood.list_scorers("maha*", needs_network=True) == ["mahalanobis-odin"]
    energy = ncood.create_scorer("energy", T=2.0)
    energy.fit(tiny_dump.train, tiny_dump.head)
    logits = tiny_dump.test.logits.astype(np.float64)
    expected = 2.0 * np.log(np.exp(logits / 2.0).sum(axis=1))
    assert np.allclose(energy.score(tiny_dump.test), expected)
    assert ncood.create_scorer("vim", dim=3).dim == 3
    with pytest.raises(NcoodError, match=r"unknown scorer 'vimm' \(known: .*vim"):
        ncood.create_scorer("vimm")
    with pytest.raises(NcoodError, match=r"no parameter 'dims' \(known: dim\)"):
        ncood.create_scorer("vim", dims=3)
    with pytest.raises(NcoodError, match="expects float"):
        ncood.create_scorer("energy", T="2")  # a string is what --set is for
    with pytest.raises(NcoodError, match="positive"):
        ncood.create_scorer("energy", T=-1.0)


def test_evaluate_is_what_analyze_writes(tiny_dump, tmp_path):
    path = tmp_path / "f.safetensors"
    save_features(path, tiny_dump)
    names = ["msp", "vim", "nc"]
    scorers, analyses = select(host(), names)
    written = analyze_file(path, None, scorers, analyses, {"vim": {"dim": "3"}}).results
    for source in (tiny_dump, path):
        results = ncood.evaluate(source, names, vim={"dim": 3})
        for key in ("timings", "features", "epoch"):
            results.pop(key, None)
        assert results == {k: v for k, v in written.items() if k not in ("timings", "features")}
    assert results["params"]["vim"] == {"dim": 3}


def test_open_run_reads_epochs_features_and_results(demo_run):
    run = ncood.open_run(demo_run.root)
    assert run.epochs == demo_run.feature_epochs() and run.epochs
    dump = ncood.load_features(run.features(run.epochs[-1]))
    assert set(dump.ood) == set(run.results_for(run.epochs[-1])["ood"])
    with pytest.raises(NcoodError, match="no such run"):
        ncood.open_run(demo_run.root / "nope")


def test_epoch_selection_belongs_to_the_run(demo_run):
    epochs = demo_run.feature_epochs()
    assert demo_run.select_feature_epochs("all") == epochs
    assert demo_run.select_feature_epochs("last") == epochs[-1:]
    assert demo_run.select_feature_epochs(str(epochs[0])) == epochs[:1]
    with pytest.raises(NcoodError, match="available"):
        demo_run.select_feature_epochs("999")
    with pytest.raises(NcoodError, match="a number, 'last' or 'all'"):
        demo_run.select_feature_epochs("first")


def test_plugins_are_imported_per_hook():
    plugin_host = PluginHost()
    plugin_host.find_plugins()
    plugin_host.scorers()
    loaded = set(plugin_host.info)
    assert "scorers.vim" in loaded
    later = ("analyses.", "models.", "datasets.", "presets.")
    assert not {n for n in loaded if n.startswith(("sections.", *later))}
    plugin_host.report_sections()
    assert "sections.ood" in plugin_host.info
    waiting = [e for e in plugin_host.pending if e.name.startswith(later)]
    assert plugin_host.pending == waiting


def test_a_plugin_named_for_one_hook_that_implements_another_is_broken(tmp_path, monkeypatch):
    (tmp_path / "two_hooks.py").write_text(
        "import ncood\n"
        "@ncood.hookimpl\n"
        "def register_scorers(register): pass\n"
        "@ncood.hookimpl\n"
        "def register_report_sections(register): pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    plugin_host = PluginHost()
    plugin_host.pending.append(Pending.entry_point(EntryPoint("scorers.two", "two_hooks", "ncood")))
    scorers = plugin_host.scorers()  # no error: this one is broken, not registered
    assert not scorers.names() and plugin_host.pm.get_plugin("scorers.two") is None
    (broken,) = plugin_host.broken()
    assert broken.name == "scorers.two"
    assert "named for 'scorers' but implements register_report_sections" in broken.error
    assert not plugin_host.report_sections().names("*two*")
