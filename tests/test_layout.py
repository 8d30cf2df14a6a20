"""The layout rules of plugins/ (README "Where things are"), read from the source itself.

Each built-in plugin module sits in the sub-package named after the one hook it implements;
no plugin module imports another (what they share lives in the core); every one is listed in
``DEFAULT_PLUGINS`` (and no entry point is built in), so built-ins load through the same hooks
as a third-party package; the core never imports a plugin.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from ncood.host.loading import DEFAULT_PLUGINS, GROUP_OF_HOOK

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ROOT / "plugins"
HOOK_OF = {  # folder → the hooks its modules may implement
    "scorers": {"register_scorers"},
    "analyses": {"register_analyses"},
    "sections": {"register_report_sections"},
    "models": {"register_models"},
    "datasets": {"register_datasets"},
    "presets": {"register_presets"},
}
MODULES = sorted(
    path for group in HOOK_OF for path in (PLUGINS / group).glob("*.py") if path.stem != "__init__"
)


def module_name(path: Path) -> str:
    return f"ncood_plugins.{path.parent.name}.{path.stem}"


def imported_modules(path: Path) -> list[str]:
    """Every module an ``import`` or ``from … import`` of the file names (any nesting level)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # a relative import can only reach a sibling plugin
                names.append("." * node.level + (node.module or ""))
            else:
                names.append(node.module or "")
    return names


def hookimpls(path: Path) -> set[str]:
    """Names of the functions decorated with ``hookimpl`` (however it is spelled)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                name = (
                    target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
                )
                if name == "hookimpl":
                    found.add(node.name)
    return found


def test_every_group_has_modules_and_plugins_has_no_loose_ones():
    assert {p.parent.name for p in MODULES} == set(HOOK_OF)
    loose = [p.name for p in PLUGINS.glob("*.py") if p.name != "__init__.py"]
    assert loose == [], "a plugin module belongs in the folder of its hook"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_plugin_module_implements_only_its_groups_hook(path):
    found = hookimpls(path)
    assert found and found <= HOOK_OF[path.parent.name]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_plugin_module_imports_another(path):
    bad = [m for m in imported_modules(path) if m.startswith((".", "ncood_plugins"))]
    assert bad == []


def test_the_checks_see_a_forbidden_import_and_a_second_hook(tmp_path):
    """The two checks above fail on a module that breaks the rules (they can fail)."""
    module = tmp_path / "bad.py"
    module.write_text(
        "import ncood\n"
        "def f():\n"
        "    from ncood_plugins.scorers import logits\n"
        "@ncood.hookimpl\n"
        "def register_scorers(register): ...\n"
        "@ncood.hookimpl(tryfirst=True)\n"
        "def register_analyses(register): ...\n"
    )
    assert "ncood_plugins.scorers" in imported_modules(module)
    assert hookimpls(module) == {"register_scorers", "register_analyses"}


def test_the_core_never_imports_a_plugin():
    core = sorted((ROOT / "ncood").rglob("*.py"))
    offenders = {
        str(p.relative_to(ROOT)): [m for m in imported_modules(p) if m.startswith("ncood_plugins")]
        for p in core
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_every_built_in_module_is_a_default_plugin():
    assert sorted(DEFAULT_PLUGINS) == sorted(f"{p.parent.name}.{p.stem}" for p in MODULES)
    assert len(set(DEFAULT_PLUGINS)) == len(DEFAULT_PLUGINS)


def test_each_folder_is_the_group_its_hooks_load_for():
    """A built-in is imported only for the hooks of its folder (loading's naming rule)."""
    assert {g: {h for h, f in GROUP_OF_HOOK.items() if f == g} for g in HOOK_OF} == HOOK_OF


def test_no_built_in_is_an_entry_point():
    """Entry points are for third parties: a new built-in file is one line of DEFAULT_PLUGINS."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert "[project.entry-points.ncood]" not in text


@pytest.mark.parametrize(
    "path", [p for p in MODULES if p.parent.name == "sections"], ids=lambda p: p.name
)
def test_a_section_module_renders_the_template_of_its_name(path):
    module = importlib.import_module(module_name(path))
    registered = []
    module.register_report_sections(register=registered.append)
    assert [s.template for s in registered] == [f"sections/{path.stem}.tex.j2"]
    assert (ROOT / "templates" / "sections" / f"{path.stem}.tex.j2").is_file()
