"""Importing ncood changes nothing process-wide: users import it into their own training scripts.

A fresh interpreter takes a snapshot of what a library could change behind the user's back —
glibc's allocator behaviour, torch's and BLAS's thread counts, signal handlers, warnings
filters, the environment, NumPy's error state, torch's global switches — then imports every
module of ``ncood`` and of the built-in plugins, and takes it again. The two must be equal.
The allocator is observed, not asked (glibc has no getter): once a 24 MiB block has been freed,
glibc's dynamic mmap threshold serves an 8 MiB block from its heap; a fixed
``mallopt(M_MMAP_THRESHOLD)`` makes every such block a fresh mapping, which is what made every
training step of the demo pay ``mmap``/``munmap`` pairs.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SNAPSHOT = r"""
import ctypes, importlib, json, os, pkgutil, signal, sys, warnings
import numpy, torch
from threadpoolctl import threadpool_info


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]


def small_block_mapped_after_a_large_one_freed():
    # Eat the top of the heap first (glibc serves from it whatever the threshold), free a
    # 24 MiB block (its own mapping: the dynamic threshold rises to 24 MiB), then ask 8 MiB.
    top = libc.mallinfo2().keepcost
    filler = libc.malloc(top - 4096) if top > 8192 else None
    libc.free(libc.malloc(24 << 20))
    before = libc.mallinfo2().hblks
    block = libc.malloc(8 << 20)
    after = libc.mallinfo2().hblks
    libc.free(block)
    libc.free(filler)
    return after > before


def snapshot():
    return {
        "malloc: 8 MiB mapped after 24 MiB freed": small_block_mapped_after_a_large_one_freed(),
        "torch threads": torch.get_num_threads(),
        "torch interop threads": torch.get_num_interop_threads(),
        "BLAS threads": sorted(
            f"{info['internal_api']}={info['num_threads']}" for info in threadpool_info()
        ),
        "signal handlers": {
            signal.Signals(number).name: repr(signal.getsignal(number))
            for number in signal.valid_signals()
            if number in set(signal.Signals)
        },
        "warnings filters": [repr(entry) for entry in warnings.filters],
        "environment": dict(os.environ),
        "numpy error state": numpy.geterr(),
        "numpy print options": repr(numpy.get_printoptions()),
        "torch default dtype": str(torch.get_default_dtype()),
        "torch float32 matmul precision": torch.get_float32_matmul_precision(),
        "torch deterministic algorithms": torch.are_deterministic_algorithms_enabled(),
        "torch grad enabled": torch.is_grad_enabled(),
        "recursion limit": sys.getrecursionlimit(),
        "switch interval": sys.getswitchinterval(),
        "meta path": [type(finder).__name__ for finder in sys.meta_path],
        "working directory": os.getcwd(),
    }


def import_everything():
    names = []
    for package in ("ncood", "ncood_plugins"):
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, package + "."):
            if not info.name.endswith("__main__"):  # running it is the command line
                importlib.import_module(info.name)
                names.append(info.name)
    return names


# Each step changes something (or should not), then the snapshot is compared with the last.
report, last = {}, snapshot()
for step in json.loads(sys.argv[1]):
    imported = import_everything() if step == "import ncood" else exec(step)
    now = snapshot()
    report[step] = {
        "imported": imported,
        "changed": {k: [last[k], now[k]] for k in now if last[k] != now[k]},
    }
    last = now
print(json.dumps(report))
"""


# the controls: each one process-wide change, which the snapshot must see
CONTROLS = {
    "ctypes.CDLL('libc.so.6').mallopt(-3, 1 << 20)": "malloc",
    "torch.set_num_threads(torch.get_num_threads() + 1)": "torch threads",
    "warnings.simplefilter('ignore')": "warnings filters",
    "signal.signal(signal.SIGTERM, lambda *a: None)": "signal handlers",
    "os.environ['NCOOD_SNAPSHOT_CONTROL'] = '1'": "environment",
}


@pytest.fixture(scope="module")
def report() -> dict:
    """One fresh interpreter: import every module of ncood, then make each control's change."""
    steps = ["import ncood", *CONTROLS]
    done = subprocess.run(
        [sys.executable, "-c", SNAPSHOT, json.dumps(steps)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc probes")


def test_importing_every_ncood_module_changes_nothing_process_wide(report):
    imported = report["import ncood"]["imported"]
    assert len(imported) > 80  # every module of the core and the plugins
    assert "ncood.engine.train" in imported and "ncood_plugins.scorers.knn" in imported
    assert report["import ncood"]["changed"] == {}


@pytest.mark.parametrize("change", list(CONTROLS))
def test_the_snapshot_sees_each_kind_of_change(report, change):
    """The controls: the same probe, after one process-wide change, reports it."""
    changed = report[change]["changed"]
    assert any(key.startswith(CONTROLS[change]) for key in changed), changed
