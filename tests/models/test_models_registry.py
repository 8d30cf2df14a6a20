"""The model registry: names and families from plugins, the user's own code by import path,
and every wrong name one line."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch
from torch import nn

import ncood
from ncood.errors import NcoodError
from ncood.host.loading import host
from ncood.models.registry import ModelRegistry, create_model, list_models, model_registry


class Linear3(nn.Module):
    def __init__(self, num_classes: int, hidden: int = 4) -> None:
        super().__init__()
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.fc(x)


class ModelsPlugin:
    @ncood.hookimpl
    def register_models(self, register):
        register("test-linear", Linear3, "a test model")
        register("testfam:*", lambda variant, num_classes: Linear3(num_classes, int(variant)))


@pytest.fixture
def models_plugin():
    host().add(ModelsPlugin(), "test_models", distribution="tests", version="0", builtin=False)
    yield
    host().remove("test_models")


def test_a_plugin_registers_names_and_families(models_plugin):
    assert {"test-linear", "testfam:*"} <= set(list_models())
    assert list_models("test*") == ["test-linear", "testfam:*"]
    model = create_model("test-linear", 7, hidden=5)
    assert isinstance(model, Linear3) and model.fc.weight.shape == (7, 5)
    assert create_model("testfam:6", 2).fc.weight.shape == (2, 6)
    entry, variant = model_registry().resolve("testfam:6")
    assert entry.plugin == "test_models" and variant == "6"


def test_duplicates_and_bad_names_are_refused():
    registry = ModelRegistry()
    registry.register("a", Linear3)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("a", Linear3)
    for bad in ("", "*", "x*y", "a:b:*"):
        with pytest.raises(ValueError, match="give a name"):
            registry.register(bad, Linear3)
    with pytest.raises(ValueError, match="not callable"):
        registry.register("b", 3)


def test_a_plugin_registering_twice_is_named():
    class Twice:
        @ncood.hookimpl
        def register_models(self, register):
            register("dup", Linear3)
            register("dup", Linear3)

    host().add(Twice(), "twice", distribution="tests", version="0", builtin=False)
    try:
        registry = model_registry()  # the plugin is broken; the others' models still build
        assert "dup" not in registry and "resnet18-cifar" in registry
        assert "'dup' is registered twice" in host().info["twice"].error
    finally:
        host().remove("twice")


def test_unknown_names_are_one_line(models_plugin):
    with pytest.raises(NcoodError, match=r"unknown model 'nope' \(known: .*test-linear"):
        create_model("nope", 3)
    with pytest.raises(NcoodError, match="needs a name after 'testfam:'"):
        create_model("testfam:", 3)
    with pytest.raises(NcoodError, match=r"cannot import 'no_such_package_xyz.models' \(No module"):
        create_model("no_such_package_xyz.models:build", 3)


def test_user_code_is_imported_by_path(tmp_path, monkeypatch):
    (tmp_path / "my_nets.py").write_text(
        textwrap.dedent(
            """
            from torch import nn

            def build(num_classes, width=2):
                return nn.Sequential(nn.Flatten(), nn.Linear(width, num_classes))

            NOT_A_MODEL = 3

            def broken(num_classes):
                raise RuntimeError("out of\\nmemory")

            def wrong_type(num_classes):
                return "a string"
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        model = create_model("my_nets:build", 4, width=3)
        assert isinstance(model, nn.Sequential) and model[1].weight.shape == (4, 3)
        with pytest.raises(NcoodError, match="'NOT_A_MODEL' is not callable"):
            create_model("my_nets:NOT_A_MODEL", 4)
        with pytest.raises(NcoodError, match="has no 'missing'"):
            create_model("my_nets:missing", 4)
        with pytest.raises(NcoodError, match="building model 'my_nets:broken' failed: out of"):
            create_model("my_nets:broken", 4)
        with pytest.raises(NcoodError, match="returned str, not a torch.nn.Module"):
            create_model("my_nets:wrong_type", 4)
    finally:
        sys.modules.pop("my_nets", None)
    assert torch.is_tensor(model(torch.zeros(1, 3)))


def test_the_documented_example_plugin_works():
    import re
    import types
    from pathlib import Path

    docs = (Path(__file__).parents[2] / "docs" / "plugins.md").read_text(encoding="utf-8")
    section = docs.split("### `register_models(register)`", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    plugin = types.ModuleType("documented_models")
    exec(compile(code, "docs/plugins.md", "exec"), plugin.__dict__)
    host().add(plugin, "documented_models", distribution="docs", version="0", builtin=False)
    try:
        model = create_model("tinynet", 5, width=4)
        assert model(torch.zeros(2, 3, 8, 8)).shape == (2, 5)
        assert create_model("tinyfam:6", 3).fc.weight.shape == (3, 6)
    finally:
        host().remove("documented_models")
