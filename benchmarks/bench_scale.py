"""Peak memory and wall time of ``ncood analyze`` on ImageNet-shaped dumps (issue 13).

    .venv/bin/python benchmarks/bench_scale.py --shape imagenet200|imagenet1k [--train N]
        [--dir DIR] [--keep] [--plugins msp,maxlogit,energy,mahalanobis,vim,neco,nc|all]
        [--seed 0] [--memory-budget GIB]

1. Generates a synthetic features file of the shape of OpenOOD v1.5's benchmarks, streamed to
   disk block by block (memory does not grow with the file) and seeded:
   * ``imagenet200``: ResNet-18, D = 512, 200 classes, 130,000 train, 10,000 test;
   * ``imagenet1k``: ResNet-50, D = 2048, 1,000 classes, 1,281,167 train, 50,000 test
     (``--train 400000`` makes the 400k cut);
   * both with the OOD sets SSB-hard 49,000, NINCO 5,879, iNaturalist 10,000, Textures 5,160,
     OpenImage-O 15,869.
   Features are post-ReLU class patterns plus noise, logits = features · Wᵀ + b of a head
   aligned with the class means (so every statistic is well conditioned, as a trained net's).
   A file already in ``--dir`` with the same shape and seed is reused.
2. Runs ``python -m ncood analyze FILE --plugins … --json --quiet`` as a fresh process and
   reports its peak RSS (``wait4``'s ``ru_maxrss``) against the 3 GiB target of issue 26, wall
   time, CPU time and the per-plugin timings of results.json, with the machine's load average
   before and after. ``--plugins all`` is every feature-level scorer and analysis (``ncood
   analyze`` without ``--plugins``: a features file has no network for the model-based ones).
   A scorer refused by the memory budget is listed, not a failure of the benchmark.

The file is deleted at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("NCOOD_LOAD_PLUGINS", "")  # built-ins only, whatever else is installed

from ncood.store.features_writer import FeaturesWriter  # noqa: E402

OOD_SETS = {
    "ssb-hard": 49_000,
    "ninco": 5_879,
    "inaturalist": 10_000,
    "textures": 5_160,
    "openimage-o": 15_869,
}
SHAPES = {
    "imagenet200": {"dim": 512, "classes": 200, "train": 130_000, "test": 10_000},
    "imagenet1k": {"dim": 2048, "classes": 1000, "train": 1_281_167, "test": 50_000},
}
TP_SIX = ["msp", "maxlogit", "energy", "mahalanobis", "vim", "neco"]
BLOCK = 8192
RSS_TARGET_GIB = 3.0  # issue 26: every feature-level scorer on the ImageNet-1K dump


def generate(path: Path, dim: int, classes: int, train: int, test: int, seed: int) -> float:
    """Write the synthetic dump block by block; returns the seconds it took."""
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    means = np.maximum(rng.normal(0.4, 1.0, (classes, dim)), 0).astype(np.float32)
    weight = ((means - means.mean(axis=0)) * (4.0 / np.sqrt(dim))).astype(np.float32)
    bias = rng.normal(0, 0.1, classes).astype(np.float32)
    sizes = {"train": train, "test": test, **{f"ood/{k}": n for k, n in OOD_SETS.items()}}
    metadata = {"epoch": "1", "dataset": f"synthetic-{dim}x{classes}-train{train}-seed{seed}"}
    with FeaturesWriter(path, classes=classes, dim=dim, splits=sizes, metadata=metadata) as writer:
        writer.write_head(weight, bias[:, None].reshape(classes))
        for index, (name, n) in enumerate(sizes.items()):
            split_rng = np.random.default_rng([seed, index])
            ood = name.startswith("ood/")
            for start in range(0, n, BLOCK):
                rows = min(BLOCK, n - start)
                if ood:  # unseen "classes": fresh patterns from the same distribution
                    labels = np.full(rows, -1, np.int64)
                    centres = np.maximum(split_rng.normal(0.4, 1.0, (rows, dim)), 0)
                    centres = centres.astype(np.float32)
                else:  # every class present: a shuffled round-robin of the labels
                    labels = (np.arange(start, start + rows) % classes).astype(np.int64)
                    split_rng.shuffle(labels)
                    centres = means[labels]
                noise = split_rng.standard_normal((rows, dim), dtype=np.float32)
                features = np.maximum(centres + np.float32(3.0) * noise, 0, dtype=np.float32)
                writer.write_rows(name, "features", start, features)
                writer.write_rows(name, "logits", start, features @ weight.T + bias)
                writer.write_rows(name, "labels", start, labels)
    return time.perf_counter() - started


def measured(command: list[str]) -> dict:
    """Run ``command`` as a fresh process; its wall time, CPU time and peak RSS."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err)
        # wait4 gives this child's own rusage (RUSAGE_CHILDREN would mix in earlier children).
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        return {
            "returncode": process.returncode,
            "wall_s": wall,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_gib": usage.ru_maxrss / 2**20,  # KiB on Linux
            "stdout": out.read().decode(errors="replace"),
            "stderr": err.read().decode(errors="replace"),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="imagenet200")
    parser.add_argument("--train", type=int, help="train rows (default: the shape's)")
    parser.add_argument("--dir", type=Path, help="where the dump goes (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the dump afterwards")
    parser.add_argument("--plugins", default=",".join([*TP_SIX, "nc"]))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-budget", type=float, help="passed on to ncood analyze (GiB)")
    args = parser.parse_args()

    shape = dict(SHAPES[args.shape])
    if args.train:
        shape["train"] = args.train
    folder = args.dir or Path(tempfile.mkdtemp(prefix="ncood-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{args.shape}-train{shape['train']}-seed{args.seed}.safetensors"
    path = folder / name
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    if path.is_file():
        print(f"reusing {path} ({path.stat().st_size / 1e9:.2f} GB)")
    else:
        seconds = generate(
            path, shape["dim"], shape["classes"], shape["train"], shape["test"], args.seed
        )
        print(f"generated {path} ({path.stat().st_size / 1e9:.2f} GB) in {seconds:.0f} s")
    size_gib = path.stat().st_size / 2**30
    out_dir = folder / (path.stem + "-analysis")
    command = [
        sys.executable,
        "-m",
        "ncood",
        "analyze",
        str(path),
        *([] if args.plugins == "all" else ["--plugins", args.plugins]),
        *(["--memory-budget", str(args.memory_budget)] if args.memory_budget else []),
        "--out",
        str(out_dir),
        "--json",
        "--quiet",
    ]
    try:
        load_before = os.getloadavg()[0]
        run = measured(command)
        load_after = os.getloadavg()[0]
        results_path = out_dir / "results.json"
        if run["returncode"] != 0 and (run["returncode"] != 1 or not results_path.is_file()):
            print(run["stderr"][-3000:])
            raise SystemExit(f"ncood analyze failed (exit {run['returncode']})")
        results = json.loads(results_path.read_text())
        timings = results.get("timings", {})
        print(
            f"shape {args.shape}: train {shape['train']:,} × {shape['dim']}, test "
            f"{shape['test']:,}, OOD {sum(OOD_SETS.values()):,} in {len(OOD_SETS)} sets, "
            f"{shape['classes']} classes; file {size_gib:.2f} GiB"
        )
        print(
            f"ncood analyze --plugins {args.plugins}: wall {run['wall_s']:.1f} s, CPU "
            f"{run['cpu_s']:.1f} s, peak RSS {run['peak_rss_gib']:.2f} GiB "
            f"({run['peak_rss_gib'] / size_gib:.3f} × the file)"
        )
        verdict = "within" if run["peak_rss_gib"] <= RSS_TARGET_GIB else "OVER"
        print(
            f"  peak RSS {run['peak_rss_gib']:.2f} GiB: {verdict} the {RSS_TARGET_GIB} GiB target"
        )
        print("  per plugin: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
        for line in run["stderr"].splitlines():
            if "refused before fitting" in line and "warning" in line:
                print(f"  {line}")
        print(f"  plugins total {sum(timings.values()):.1f} s; errors: {results.get('errors')}")
        print(f"load average {load_before:.2f} before the run, {load_after:.2f} after")
        for ood_name, per_scorer in results["ood"].items():
            print(
                f"  {ood_name:12} "
                + " ".join(f"{s} {m['auroc']:.3f}" for s, m in per_scorer.items())
            )
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
        if not args.keep:
            path.unlink(missing_ok=True)
            if args.dir is None:
                shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
