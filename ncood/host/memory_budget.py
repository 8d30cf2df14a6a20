"""How much memory one scorer may hold, and the one-line refusal of one that would hold more.

A scorer's estimate (``memory_bytes``, ncood/host/scoring.py) is checked against the budget
before any scorer is fitted, so one that cannot fit (1,000 class covariances of 2048² in
float64 are 31 GiB) costs one line and only itself, instead of the operating system killing
the whole analysis halfway.
"""

from __future__ import annotations

import os
from typing import Any

from ncood.host.scoring import DumpShape, memory_estimate

GIB = 2**30


def available_bytes() -> int | None:
    """The memory the system can give without swapping (``MemAvailable`` of /proc/meminfo),
    else the free physical pages; None where neither can be read."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def budget_bytes(gib: float | None) -> int | None:
    """``--memory-budget`` in bytes; by default the memory available now (None: unknown, so
    nothing is refused)."""
    return available_bytes() if gib is None else int(gib * GIB)


def refusal(name: str, scorer: Any, shape: DumpShape, budget: int | None) -> str | None:
    """Why ``scorer`` may not run on a dump of ``shape`` (one line), or None if it fits."""
    if budget is None:
        return None
    estimate = memory_estimate(scorer, shape)
    if estimate is None or estimate <= budget:
        return None
    return (
        f"refused before fitting: it would hold about {estimate / GIB:.3g} GiB on this "
        f"features file ({shape.describe()}), more than the memory budget of "
        f"{budget / GIB:.3g} GiB (--memory-budget GIB)"
    )
