"""Start-up cost of the commands: wall time of ``ncood --help``, ``ncood plugins`` and
``ncood analyze`` on a small dump, and which heavy modules each imports.

    .venv/bin/python benchmarks/bench_startup.py [--repeat 7] [--baseline OLD_VENV/bin/python]

Each command runs in a fresh interpreter (``python -m ncood …``), ``--repeat`` times; the
median is reported. With ``--baseline`` the same commands run, interleaved, under another
installation (e.g. a checkout before the change), so both figures share the machine's load.
``python -X importtime`` gives, per command, the total import time and whether numpy, torch,
scipy.stats, sklearn, matplotlib or jinja2 were imported at all.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("numpy", "torch", "scipy.stats", "sklearn", "matplotlib", "jinja2", "safetensors")
_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)")


def make_dump(python: str, path: Path) -> None:
    """A 10-class dump of 2,000 train and 1,000 test samples, D = 64: start-up dominates."""
    code = (
        "import numpy as np\n"
        "from ncood.store.features import FeatureDump, Head, Split, save_features\n"
        "rng = np.random.default_rng(0)\n"
        "w = rng.normal(size=(10, 64)).astype(np.float32)\n"
        "def split(n, ood=False):\n"
        "    x = rng.normal(size=(n, 64)).astype(np.float32)\n"
        "    y = np.full(n, -1) if ood else np.arange(n) % 10\n"
        "    return Split(x, x @ w.T, y)\n"
        "dump = FeatureDump(split(2000), split(1000), {'noise': split(500, True)}, "
        "Head(w, np.zeros(10, np.float32)))\n"
        f"save_features({str(path)!r}, dump)\n"
    )
    subprocess.run([python, "-c", code], check=True, cwd=NEUTRAL)


def commands(dump: Path, out: Path) -> dict[str, list[str]]:
    return {
        "--help": ["--help"],
        "plugins": ["plugins"],
        "analyze (all)": ["analyze", str(dump), "--out", str(out), "--quiet"],
        "analyze msp,energy": [
            "analyze",
            str(dump),
            "--plugins",
            "msp,energy",
            "--out",
            str(out),
            "--quiet",
        ],
    }


# A neutral working directory: ``python -m`` puts it first on sys.path, and a checkout's own
# ``ncood/`` there would shadow the installation being measured.
NEUTRAL = tempfile.gettempdir()


def timed(python: str, args: list[str]) -> float:
    env = {**os.environ, "NCOOD_LOAD_PLUGINS": ""}
    started = time.perf_counter()
    subprocess.run(
        [python, "-m", "ncood", *args],
        check=True,
        env=env,
        capture_output=True,
        text=True,
        cwd=NEUTRAL,
    )
    return time.perf_counter() - started


def import_profile(python: str, args: list[str]) -> tuple[float, set[str]]:
    """(seconds of imports, which of HEAVY were imported) for one run of the command."""
    env = {**os.environ, "NCOOD_LOAD_PLUGINS": ""}
    done = subprocess.run(
        [python, "-X", "importtime", "-m", "ncood", *args],
        check=True,
        env=env,
        capture_output=True,
        text=True,
        cwd=NEUTRAL,
    )
    total, seen = 0, set()
    for line in done.stderr.splitlines():
        match = _IMPORT_LINE.match(line)
        if not match:
            continue
        cumulative, depth, module = int(match.group(2)), len(match.group(3)), match.group(4)
        if depth == 1:  # top-level imports: their cumulative times add up to the total
            total += cumulative
        seen |= {h for h in HEAVY if module == h or module.startswith(h + ".")}
    return total / 1e6, seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--baseline", help="python of another installation to compare with")
    args = parser.parse_args()
    pythons = {"current": sys.executable}
    if args.baseline:
        pythons = {"baseline": args.baseline, **pythons}
    with tempfile.TemporaryDirectory() as tmp:
        dump = Path(tmp) / "dump.safetensors"
        make_dump(sys.executable, dump)
        for label, argv in commands(dump, Path(tmp) / "out").items():
            times: dict[str, list[float]] = {name: [] for name in pythons}
            timed(sys.executable, argv)  # warm the file cache once
            for _ in range(args.repeat):
                for name, python in pythons.items():
                    times[name].append(timed(python, argv))
            for name, python in pythons.items():
                imports, heavy = import_profile(python, argv)
                print(
                    f"{label:20} {name:9} median {statistics.median(times[name]):.3f} s "
                    f"(min {min(times[name]):.3f})  imports {imports:.3f} s  "
                    f"heavy: {', '.join(sorted(heavy)) or '-'}"
                )


if __name__ == "__main__":
    main()
