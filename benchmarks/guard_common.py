"""What the CI guards share: importing all of ncood mid-run, and judging ratios."""

from __future__ import annotations

import importlib
import pkgutil


def import_everything() -> int:
    """Import every module of ncood and of the built-in plugins (as a command would, and
    more); returns how many. ``__main__`` is skipped: running it is the command line."""
    count = 0
    for package in ("ncood", "ncood_plugins"):
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, package + "."):
            if not info.name.endswith("__main__"):
                importlib.import_module(info.name)
                count += 1
    return count


def judge(checks: list[tuple[str, float, float]]) -> bool:
    """Print each ``(name, ratio, limit)``; True when every ratio is within its limit."""
    passed = True
    for name, ratio, limit in checks:
        passed &= ratio <= limit
        print(f"ratio {name}: {ratio:.3f}  {'ok' if ratio <= limit else f'FAIL (> {limit})'}")
    return passed
