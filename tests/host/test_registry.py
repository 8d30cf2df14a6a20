"""One registry type for every hook, and the built-ins found from DEFAULT_PLUGINS.

Every hook fills a :class:`Registry` (models: its subclass with families); a dataset or a preset
that a plugin registers wrongly breaks that plugin alone; the built-ins are the modules of
``DEFAULT_PLUGINS`` whatever entry points an older install left, and ``NCOOD_LOAD_PLUGINS``
still selects the third-party plugins only.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import ncood
from ncood.errors import NcoodError
from ncood.host import hookspecs, loading
from ncood.host.loading import DEFAULT_PLUGINS, PluginHost, host
from ncood.host.model_registry import ModelRegistry
from ncood.host.registry import Registry
from ncood.store.train_config import TrainConfig

# One collector per hook: register_scorers → host().scorers(), and so on.
COLLECTORS = sorted(
    name.removeprefix("register_") for name in dir(hookspecs) if name.startswith("register_")
)


@pytest.mark.parametrize("collect", COLLECTORS)
def test_every_hook_fills_the_one_registry_type(collect):
    registry = getattr(host(), collect)()
    assert isinstance(registry, Registry) and len(registry) > 0
    for name, item in registry.items():
        assert item.name == name and host().info[item.plugin].builtin


def test_the_model_registry_is_that_type_with_families():
    registry = ModelRegistry()
    registry.register("tiny", dict)
    registry.register("fam:*", lambda variant, num_classes: None)
    assert isinstance(registry, Registry) and registry.names("*") == ["fam:*", "tiny"]
    assert registry.get("tiny").builder is dict
    assert registry.registered("fam:x")[1] == "x" and registry.registered("other") is None
    with pytest.raises(NcoodError, match="unknown model"):
        registry.get("fam:x")  # exact names only: resolve() reads families


def test_a_registry_refuses_duplicates_and_names_the_known_ones():
    registry: Registry[int] = Registry("thing")
    registry.add("b", 2)
    registry.add("a", 1)
    assert list(registry) == ["a", "b"] and registry.names("a*") == ["a"]
    with pytest.raises(ValueError, match="registered twice"):
        registry.add("a", 3)
    with pytest.raises(ValueError, match="non-empty string name"):
        registry.add("", 3)
    with pytest.raises(NcoodError, match=r"unknown thing 'c' \(known: a, b\)"):
        registry.get("c")


def test_a_wrong_dataset_or_preset_breaks_its_plugin_alone(plugin_host):
    class NoRole:
        @ncood.hookimpl
        def register_datasets(self, register):
            register("no-role")

    class NotAConfig:
        @ncood.hookimpl
        def register_presets(self, register):
            register({"preset": "dict-preset", "dataset": "digits"})

    plugin_host(NoRole(), "test_no_role")
    plugin_host(NotAConfig(), "test_not_a_config")
    datasets, presets = host().datasets(), host().presets()
    assert "no-role" not in datasets and "digits" in datasets
    assert "dict-preset" not in presets and "demo-standard" in presets
    assert "give load=, ood= or both" in host().info["test_no_role"].error
    assert "not a TrainConfig" in host().info["test_not_a_config"].error


def test_a_preset_taken_by_a_built_in_breaks_the_second_plugin(plugin_host):
    class Again:
        @ncood.hookimpl
        def register_presets(self, register):
            register(
                TrainConfig(
                    preset="tp-200", dataset="digits", ood=["noise"], epochs=1, schedule="cosine"
                )
            )

    plugin_host(Again(), "test_again")
    assert host().presets().get("tp-200").config.dataset == "cifar100"
    assert "'tp-200' is registered twice" in host().info["test_again"].error


def fake_entry_point(name: str, distribution: str, plugin: object):
    return SimpleNamespace(
        name=name,
        dist=SimpleNamespace(name=distribution, version="9.9"),
        load=lambda: plugin,
    )


@pytest.mark.parametrize("wanted", [None, "", "third"])
def test_builtins_come_from_the_tuple_and_the_variable_selects_third_parties(monkeypatch, wanted):
    found = [
        fake_entry_point("scorers.logits", "ncood", "an older install's"),
        fake_entry_point("stale", "ncood", "an older install's"),
        fake_entry_point("third", "ncood-third", SimpleNamespace()),
    ]
    monkeypatch.setattr(loading, "entry_points", lambda group: found)
    if wanted is None:
        monkeypatch.delenv(loading.LOAD_ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(loading.LOAD_ENV_VAR, wanted)
    plugin_host = PluginHost()
    plugin_host.find_plugins()
    pending = {p.name: p for p in plugin_host.pending}
    third = {"third"} if wanted != "" else set()
    assert set(pending) == set(DEFAULT_PLUGINS) | third
    assert all(pending[name].builtin for name in DEFAULT_PLUGINS)
    assert pending["scorers.logits"].distribution == "ncood"
    if third:
        assert (pending["third"].distribution, pending["third"].builtin) == ("ncood-third", False)
