"""Speed of the TP's six scorers on a CIFAR-100-sized dump, against a straightforward baseline.

    .venv/bin/python benchmarks/bench_scorers.py [--repeats 3] [--skip-baseline] [--beyond]
                                                 [--keep DIR]

1. Generates a synthetic dump the size of the TP's: 50,000 × 512 ID train features, 10,000 ID
   test, 26,032 OOD (SVHN's test size), 100 classes, post-ReLU features and a linear head.
2. In one process, times ncood's msp, maxlogit, energy, mahalanobis, vim (dim 256) and neco
   (dim 100) — fit on train, score test and OOD, metrics — and the same six written the
   straightforward way (per-class loops, scikit-learn's EmpiricalCovariance / StandardScaler /
   PCA, as in the methods' reference code), checks that both give the same scores, and prints
   both times and the ratio.
3. Writes the dump to a features file and times the whole command
   ``ncood analyze FILE --plugins msp,maxlogit,energy,mahalanobis,vim,neco
   --set vim.dim=256 --set neco.dim=100 --json`` as a fresh process (imports included).

Wall-clock times depend on what else runs on the machine; the CPU time (user + sys) of the same
work is printed beside them, as it moves less when other processes share the cores.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("NCOOD_LOAD_PLUGINS", "")  # built-ins only, whatever else is installed

sys.path.insert(0, os.path.dirname(__file__))

from cifar_sized import CLASSES, DIM, OOD, TEST, TRAIN, synthetic_arrays  # noqa: E402

from ncood.analyze.driver import analyze_dump, select  # noqa: E402
from ncood.host.loading import host  # noqa: E402
from ncood.ood.conventions import ood_metrics  # noqa: E402
from ncood.store.features import FeatureDump, Head, Split, save_features  # noqa: E402

SIX = ["msp", "maxlogit", "energy", "mahalanobis", "vim", "neco"]
SETTINGS = {"vim": {"dim": "256"}, "neco": {"dim": "100"}}
VIM_DIM, NECO_DIM = 256, 100


def synthetic_dump(seed: int = 0) -> FeatureDump:
    """:func:`cifar_sized.synthetic_arrays` as a FeatureDump."""
    arrays = synthetic_arrays(seed)

    def split(part: dict[str, np.ndarray]) -> Split:
        return Split(part["features"], part["logits"], part["labels"])

    return FeatureDump(
        split(arrays["train"]),
        split(arrays["test"]),
        {"svhn-like": split(arrays["ood"])},
        Head(arrays["head"]["weight"], arrays["head"]["bias"]),
        {"epoch": "1", "dataset": "synthetic-cifar100-size"},
    )


# --- the straightforward way ---------------------------------------------------------------


def baseline_six(dump: FeatureDump) -> dict[str, dict[str, np.ndarray]]:
    """The six scores computed as the methods' reference code and most tutorials do."""
    from numpy.linalg import norm, pinv
    from scipy.special import logsumexp, softmax
    from sklearn.covariance import EmpiricalCovariance
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    splits = {"test": dump.test, **{f"ood/{k}": v for k, v in dump.ood.items()}}
    train, w, b = dump.train, dump.head.weight, dump.head.bias
    out: dict[str, dict[str, np.ndarray]] = {name: {} for name in SIX}
    for name, split in splits.items():
        out["msp"][name] = softmax(split.logits, axis=1).max(axis=1)
        out["maxlogit"][name] = split.logits.max(axis=1)
        out["energy"][name] = logsumexp(split.logits, axis=1)

    # Mahalanobis: class means and centred features class by class, sklearn's precision,
    # then the quadratic form to each class mean in turn.
    x = train.features.astype(np.float64)
    means, centred = [], []
    for c in range(CLASSES):
        members = x[train.labels == c]
        means.append(members.mean(axis=0))
        centred.append(members - means[-1])
    precision = EmpiricalCovariance(assume_centered=True).fit(np.vstack(centred)).precision_
    for name, split in splits.items():
        q = split.features.astype(np.float64)
        distances = np.empty((len(split), CLASSES))
        for c, mean in enumerate(means):
            d = q - mean
            distances[:, c] = ((d @ precision) * d).sum(axis=1)
        out["mahalanobis"][name] = -distances.min(axis=1)

    # ViM (the paper's benchmark.py): covariance about u, general eig, null space, alpha. The
    # covariance is taken in float64: fed float32 features, scikit-learn keeps it in float32,
    # and on this dump the scores then move by up to 11 % of their range.
    u = -pinv(w.astype(np.float64)) @ b.astype(np.float64)
    shifted = train.features.astype(np.float64) - u
    covariance = EmpiricalCovariance(assume_centered=True).fit(shifted).covariance_
    eigvals, eigvecs = np.linalg.eig(covariance)
    null_space = np.ascontiguousarray(eigvecs.T[np.argsort(eigvals * -1)[VIM_DIM:]].T)
    train_residual = norm(shifted @ null_space, axis=-1)
    alpha = train.logits.max(axis=-1).mean() / train_residual.mean()
    for name, split in splits.items():
        residual = norm((split.features - u) @ null_space, axis=-1) * alpha
        out["vim"][name] = logsumexp(split.logits, axis=-1) - residual

    # NECO (the paper's code): StandardScaler, full PCA, then a per-sample norm ratio.
    scaler = StandardScaler()
    pca = PCA(train.features.shape[1]).fit(scaler.fit_transform(train.features))
    for name, split in splits.items():
        complete = scaler.transform(split.features)
        reduced = pca.transform(complete)[:, :NECO_DIM]
        out["neco"][name] = np.array(
            [norm(reduced[i]) / norm(complete[i]) for i in range(len(split))]
        )
    return out


def baseline_run(dump: FeatureDump) -> dict[str, dict[str, np.ndarray]]:
    scores = baseline_six(dump)
    for per_split in scores.values():
        for ood in dump.ood:
            ood_metrics(per_split["test"], per_split[f"ood/{ood}"])
    return scores


# --- ncood ---------------------------------------------------------------------------------


def ncood_run(dump: FeatureDump):
    from ncood.maths import stats as class_stats

    class_stats._cache.clear()  # every repeat recomputes the shared train statistics
    scorers, _ = select(host(), SIX)
    outcome = analyze_dump(dump, scorers, [], SETTINGS)
    if outcome.failures:
        raise SystemExit(f"ncood failed: {outcome.results['errors']}")
    return outcome


def agreement(ours: dict, theirs: dict) -> dict[str, float]:
    """Largest difference relative to the scores' spread, per scorer, over every split."""
    worst = {}
    for name in SIX:
        diffs = []
        for split, values in ours[name].items():
            reference = np.asarray(theirs[name][split], np.float64)
            spread = float(np.ptp(reference)) or 1.0
            diffs.append(float(np.max(np.abs(values - reference))) / spread)
        worst[name] = max(diffs)
    return worst


def timed(function, *args):
    """(wall seconds, result); the CPU seconds of the process go to ``CPU_SECONDS``."""
    started, cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    CPU_SECONDS.append(time.process_time() - cpu)
    return time.perf_counter() - started, result


CPU_SECONDS: list[float] = []


def whole_command(path: Path) -> float:
    ncood = Path(sys.executable).with_name("ncood")
    command = [str(ncood), "analyze", str(path), "--plugins", ",".join(SIX),
               "--set", "vim.dim=256", "--set", "neco.dim=100", "--json", "--quiet"]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"ncood analyze failed: {done.stderr}")
    CPU_SECONDS.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--keep", type=Path, help="write the features file here and keep it")
    parser.add_argument(
        "--beyond", action="store_true", help="also time the scorers beyond the TP's six, once"
    )
    args = parser.parse_args()

    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    started = time.perf_counter()
    dump = synthetic_dump()
    print(
        f"dump: train {TRAIN}×{DIM}, test {TEST}, OOD {OOD}, {CLASSES} classes "
        f"(generated in {time.perf_counter() - started:.1f} s)"
    )

    ours = [timed(ncood_run, dump) for _ in range(args.repeats)]
    ncood_times, ncood_cpu = [t for t, _ in ours], CPU_SECONDS[-args.repeats :]
    outcome = ours[-1][1]
    print(
        f"ncood, six scorers fit+score+metrics: best {min(ncood_times):.2f} s, "
        f"median {statistics.median(ncood_times):.2f} s over {args.repeats} "
        f"({', '.join(f'{t:.2f}' for t in ncood_times)}); CPU time best {min(ncood_cpu):.2f} s"
    )
    print("  per scorer (last run): " + ", ".join(
        f"{k} {v:.2f} s" for k, v in outcome.results["timings"].items()
    ))  # fmt: skip
    for name in SIX:
        print(f"  {name:12} AUROC {outcome.results['ood']['svhn-like'][name]['auroc']:.4f}")

    if not args.skip_baseline:
        baseline_time, baseline_scores = timed(baseline_run, dump)
        baseline_cpu = CPU_SECONDS[-1]
        print(
            f"straightforward baseline, same six: {baseline_time:.2f} s, CPU {baseline_cpu:.2f} s"
        )
        print(
            f"ratio baseline / ncood (best): wall {baseline_time / min(ncood_times):.1f}×, "
            f"CPU {baseline_cpu / min(ncood_cpu):.1f}×"
        )
        worst = agreement(outcome.scores, baseline_scores)
        print("  largest score difference / score range: " + ", ".join(
            f"{k} {v:.1e}" for k, v in worst.items()
        ))  # fmt: skip

    if args.beyond:
        others = [name for name in host().scorers().names() if name not in SIX]
        scorers, _ = select(host(), others)
        elapsed, beyond = timed(analyze_dump, dump, scorers, [])
        print(f"beyond the TP, fit+score+metrics, all {len(others)} together: {elapsed:.2f} s")
        print("  " + ", ".join(f"{k} {v:.2f} s" for k, v in beyond.results["timings"].items()))
        print("  AUROC " + ", ".join(
            f"{k} {v['auroc']:.3f}" for k, v in beyond.results["ood"]["svhn-like"].items()
        ))  # fmt: skip

    folder = args.keep or Path(tempfile.mkdtemp(prefix="ncood-bench-"))
    path = folder / "features.safetensors"
    started = time.perf_counter()
    save_features(path, dump)
    print(f"features file: {path} ({path.stat().st_size / 1e6:.0f} MB, "
          f"written in {time.perf_counter() - started:.1f} s)")  # fmt: skip
    del dump, ours, outcome
    command_times = [whole_command(path) for _ in range(args.repeats)]
    command_cpu = CPU_SECONDS[-args.repeats :]
    print(
        f"whole command `ncood analyze FILE --plugins {','.join(SIX)} --set vim.dim=256 "
        f"--set neco.dim=100 --json`: best {min(command_times):.2f} s, median "
        f"{statistics.median(command_times):.2f} s ({', '.join(f'{t:.2f}' for t in command_times)})"
        f"; CPU time (user + sys) best {min(command_cpu):.2f} s"
    )
    print(f"load average {os.getloadavg()[0]:.2f} at end")
    if args.keep is None:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
