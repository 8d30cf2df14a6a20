"""One guard around plugin code (ncood/host/guard.py), and every caller of plugin code uses it."""

from __future__ import annotations

import ast
import errno
import sys
from pathlib import Path

import numpy as np
import pytest

from ncood.errors import NcoodError
from ncood.host.guard import call_plugin, describe
from ncood.host.scoring import Contribution
from ncood.ood.tuning import tune

CORE = Path(__file__).resolve().parents[2] / "ncood"


def test_whatever_a_plugin_raises_is_its_failure_in_one_line():
    assert call_plugin(lambda x: x + 1, 1).value == 2
    exited = call_plugin(sys.exit, 3)
    assert exited.failed and exited.reason == "called sys.exit(3)"
    broken = call_plugin(lambda: {}["missing"])
    assert isinstance(broken.error, KeyError) and broken.reason == "KeyError: 'missing'"
    with pytest.raises(KeyboardInterrupt):
        call_plugin(lambda: (_ for _ in ()).throw(KeyboardInterrupt()))


def test_what_the_caller_reports_itself_passes():
    def refuse():
        raise NcoodError("a user error")

    with pytest.raises(NcoodError):
        call_plugin(refuse, passes=(NcoodError,))
    assert call_plugin(refuse).reason == "a user error"

    def full():
        raise OSError(errno.ENOSPC, "No space left on device")

    def disk_full(exc):
        return isinstance(exc, OSError) and exc.errno == errno.ENOSPC

    with pytest.raises(OSError):
        call_plugin(full, passes=disk_full)
    assert call_plugin(lambda: 1 / 0, passes=disk_full).failed
    assert describe(ValueError("  two\n lines ")) == "ValueError: two lines"


class Exits:
    """A scorer whose fit calls sys.exit for one grid value: the tuning must survive it."""

    def __init__(self, axis: int = 0) -> None:
        self.axis = axis

    def fit(self, train, head):
        if self.axis == 1:
            sys.exit(2)
        self.centre = train.features[:, self.axis].mean()

    def score(self, split):
        return -np.abs(split.features[:, self.axis] - self.centre)


def test_a_grid_point_that_exits_costs_only_that_point(tiny_dump):
    probe = Contribution("exits", Exits, "test", "tests", "scorer")
    ood = next(iter(tiny_dump.ood))
    settings, record = tune(tiny_dump, [probe], {"exits": {"axis": ["1", "0"]}}, {}, ood)
    tried = record["scorers"]["exits"]["tried"]
    assert tried[0]["error"] == "called sys.exit(2)" and settings["exits"]["axis"] == "0"


def _swallowing_handlers(path: Path) -> set[str]:
    """``<file>:<function>`` of each ``except BaseException`` (or bare ``except``) in ``path``
    that does not re-raise: it would hide Ctrl-C or a plugin's sys.exit outside the guard."""
    found = set()
    for function in ast.walk(ast.parse(path.read_text("utf-8"))):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            if not isinstance(node, ast.ExceptHandler):
                continue
            names = {n.id for n in ast.walk(node.type or ast.Pass()) if isinstance(n, ast.Name)}
            everything = node.type is None or "BaseException" in names
            if everything and not any(isinstance(n, ast.Raise) for n in ast.walk(node)):
                found.add(f"{path.name}:{function.name}")
    return found


# Handlers that keep an error to raise it elsewhere: not plugin code, not swallowed.
RELAYS = {"state.py:_write"}  # the background state writer: raised again in the training thread


def test_only_the_guard_catches_everything(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "def hides():\n    try:\n        f()\n    except BaseException:\n        pass\n"
        "def cleans():\n    try:\n        f()\n    except BaseException:\n        g()\n"
        "        raise\n"
    )
    assert _swallowing_handlers(sample) == {"sample.py:hides"}  # the check sees one
    guard = CORE / "host" / "guard.py"
    others = [p for p in CORE.rglob("*.py") if p != guard]
    assert set().union(*map(_swallowing_handlers, others)) == RELAYS
