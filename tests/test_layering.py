"""The core's layering (README "Where things are"), read from the source itself.

A *unit* is a folder of ``ncood/`` or one of its few top-level modules. A unit imports only
itself and the units its row of ``MAY_IMPORT`` names, and the table itself is a ladder (no
circle), so no circle between folders can appear; no two modules anywhere in ``ncood/`` import
each other, even through others. Imports inside functions count: they are imports all the same.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "ncood"

# unit → the units it may import (besides itself); "ncood" is the package's __init__.py
BASE = {"errors"}
MAY_IMPORT: dict[str, set[str]] = {
    "errors": set(),
    "progress": set(),
    "store": BASE,
    "maths": BASE | {"store"},
    "host": BASE | {"store"},
    "ood": BASE | {"store", "host"},
    "analyze": BASE | {"store", "maths", "host", "ood"},
    "datasets": BASE | {"progress", "host"},
    "models": BASE | {"host"},
    "engine": BASE | {"ncood", "progress", "store", "host", "datasets"},
    "extraction": BASE | {"progress", "store", "host", "datasets", "models", "engine"},
    "report": BASE | {"ncood", "store", "host", "ood"},
    "ncood": BASE | {"host"},  # hookimpl, NcoodError; the public API loads lazily (PEP 562)
    "api": BASE | {"store", "host", "analyze", "extraction"},
    "testing": BASE | {"store", "host", "ood", "extraction"},  # the scorer contract's own test
    "cli": BASE
    | {"ncood", "progress", "store", "host", "ood", "analyze", "datasets", "engine"}
    | {"extraction", "report"},
    "__main__": {"cli"},
}
# What the top level of ncood/ may hold besides folders: the entry point, the public API and
# the contract's test plugin authors run, and the two leaves every layer uses (a user error in
# one line; a progress bar that looks the same).
TOP_LEVEL_MODULES = {
    "__init__.py",
    "__main__.py",
    "api.py",
    "testing.py",
    "errors.py",
    "progress.py",
}


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, root: Path) -> set[str]:
    """The modules of ``root``'s package that ``path`` imports, at any nesting level."""
    package = root.name
    here = module_name(path, root).split(".")
    if path.name != "__init__.py":
        here = here[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = here[: len(here) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names.add(module)
            # ``from ncood.store import features`` imports ncood.store.features
            names |= {f"{module}.{alias.name}" for alias in node.names}
    return {n for n in names if n == package or n.startswith(package + ".")}


def import_graph(root: Path) -> dict[str, set[str]]:
    """module → the modules of the package it imports (names that are not modules dropped)."""
    paths = {module_name(p, root): p for p in root.rglob("*.py")}
    return {
        name: {m for m in imported(path, root) if m in paths and m != name}
        for name, path in paths.items()
    }


def unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def upward_imports(graph: dict[str, set[str]], table: dict[str, set[str]]) -> list[str]:
    """``a -> b`` for every import that the table does not allow (or whose unit it lacks)."""
    bad = []
    for module, targets in sorted(graph.items()):
        here = unit(module)
        for target in sorted(targets):
            there = unit(target)
            if there != here and there not in table.get(here, set()):
                bad.append(f"{module} -> {target}")
    return bad


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_the_top_level_holds_folders_and_a_short_list():
    loose = {p.name for p in CORE.iterdir() if p.is_file() and p.suffix == ".py"}
    assert loose <= TOP_LEVEL_MODULES, "a module belongs in the folder of its concern"
    folders = {p.name for p in CORE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == {u for u in MAY_IMPORT if (CORE / u).is_dir()}


@pytest.mark.parametrize("folder", sorted(u for u in MAY_IMPORT if (CORE / u).is_dir()))
def test_each_folder_says_what_it_holds_and_what_it_may_import(folder):
    doc = ast.get_docstring(ast.parse((CORE / folder / "__init__.py").read_text("utf-8")))
    assert doc and "import" in doc, f"ncood/{folder}/__init__.py: say what it holds and imports"


def test_the_table_is_a_ladder():
    units = {u: {t for t in targets if t in MAY_IMPORT} for u, targets in MAY_IMPORT.items()}
    assert circles(units) == []
    assert all(targets <= set(MAY_IMPORT) for targets in MAY_IMPORT.values())


def test_every_import_runs_down_the_table():
    assert upward_imports(import_graph(CORE), MAY_IMPORT) == []


def test_no_module_circle():
    assert circles(import_graph(CORE)) == []


# ncood.<name>[.<name>...] written anywhere in code or docs (an import, a docstring, a monkeypatch)
_DOTTED = re.compile(r"(?<![\w./-])ncood(?:\.[A-Za-z_]\w*)+")
# Names written on purpose: the checks' own examples, the API's unknown-name test, a file name.
_MEANT = {"tests/test_layering.py", "tests/test_api.py:ncood.no_such_name", ":ncood.safetensors"}


def dangling_names(text: str) -> set[str]:
    """The ``ncood.a.b`` names in ``text`` that name no module, package or attribute of ncood."""
    bad = set()
    for name in set(_DOTTED.findall(text)):
        parts = name.split(".")
        here = CORE
        for depth, part in enumerate(parts[1:], start=1):
            if (here / part).is_dir() or (here / f"{part}.py").is_file():
                here = here / part
                continue
            if here.is_dir():  # an attribute of the package: ncood.hookimpl, ncood.store.features?
                package = importlib.import_module(".".join(parts[:depth]))
                if not hasattr(package, part):
                    bad.add(name)
            break  # an attribute of a module (ncood.store.features.Split): the module exists
    return bad


def test_every_ncood_name_in_code_and_docs_exists():
    """No import, docstring or doc cites a module that is not there (old paths included)."""
    files = [
        p
        for folder in ("ncood", "plugins", "tests", "benchmarks", "examples", "docs")
        for p in (ROOT / folder).rglob("*")
        if p.suffix in {".py", ".md"} and ".venv" not in p.parts
    ] + [ROOT / "README.md"]
    bad = [
        f"{p.relative_to(ROOT)}: {name}"
        for p in files
        for name in sorted(dangling_names(p.read_text("utf-8")))
        if not {str(p.relative_to(ROOT)), f"{p.relative_to(ROOT)}:{name}", f":{name}"} & _MEANT
    ]
    assert bad == []


def test_a_dangling_name_is_seen():
    assert dangling_names("see ncood.features and ncood.store.features.Split") == {"ncood.features"}
    assert dangling_names("ncood.hookimpl, ncood.store.nothing_here") == {
        "ncood.store.nothing_here"
    }


def test_the_checks_see_a_circle_and_an_upward_import(tmp_path):
    root = tmp_path / "ncood"
    files = {
        "__init__.py": "",
        "low/__init__.py": "",
        "low/a.py": "from ncood.high import b\n",  # upward: low may not import high
        "high/__init__.py": "",
        "high/b.py": "def f():\n    from ncood.low.c import g\n",
        "low/c.py": "from . import a\n",  # a -> b -> c -> a, the last link relative
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    graph = import_graph(root)
    table = {"low": set(), "high": {"low"}, "ncood": set()}
    assert upward_imports(graph, table) == [
        "ncood.low.a -> ncood.high",
        "ncood.low.a -> ncood.high.b",
    ]
    assert circles(graph) == [["ncood.high.b", "ncood.low.a", "ncood.low.c"]]
    assert circles({"low": {"high"}, "high": {"low"}}) == [["high", "low"]]
