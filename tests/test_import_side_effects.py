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


before = snapshot()
exec(sys.argv[1])  # a control's one change, made instead of importing ncood
imported = []
for package in () if sys.argv[1] else ("ncood", "ncood_plugins"):
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, package + "."):
        if info.name.endswith("__main__"):
            continue  # running it is the command line, not an import
        importlib.import_module(info.name)
        imported.append(info.name)
after = snapshot()
print(json.dumps({
    "imported": imported,
    "changed": {k: [before[k], after[k]] for k in before if before[k] != after[k]},
}))
"""


def run_snapshot(change: str = "") -> dict:
    done = subprocess.run(
        [sys.executable, "-c", SNAPSHOT, change],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc probes")


def test_importing_every_ncood_module_changes_nothing_process_wide():
    report = run_snapshot()
    assert len(report["imported"]) > 80  # every module of the core and the plugins
    assert "ncood.engine.train" in report["imported"]
    assert "ncood_plugins.scorers.knn" in report["imported"]
    assert report["changed"] == {}


@pytest.mark.parametrize(
    ("change", "what"),
    [
        ("ctypes.CDLL('libc.so.6').mallopt(-3, 1 << 20)", "malloc"),
        ("torch.set_num_threads(1)", "torch threads"),
        ("warnings.simplefilter('ignore')", "warnings filters"),
        ("signal.signal(signal.SIGTERM, lambda *a: None)", "signal handlers"),
    ],
)
def test_the_snapshot_sees_each_kind_of_change(change, what):
    """The controls: the same probe, with one process-wide change made, reports it."""
    changed = run_snapshot(change)["changed"]
    assert any(key.startswith(what) for key in changed), changed
