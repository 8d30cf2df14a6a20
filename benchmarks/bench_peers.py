"""The 14 feature-level scorers of issue 19 against their pytorch-ood 0.4.0 detectors, on the
CIFAR-100-sized synthetic dump of ``bench_scorers.py``, in one process.

    .venv/bin/python benchmarks/bench_peers.py [--only NAME,NAME] [--skip-command]

(``--only lts,pnml``: issue 27's two feature-level scorers that have a pytorch-ood peer.)

1. Generates the dump (50,000 × 512 train, 10,000 test, 26,032 OOD, 100 classes).
2. Times ncood's fit + score + metrics of all 14 together (``analyze_dump``, per-scorer
   timings from results.json's ``timings``), then each pytorch-ood detector's fit + predict
   on the same arrays (as tensors; predictions in batches of 1,024 rows, 256 for GMM, whose
   K × B × D float64 intermediate would otherwise take gigabytes), and prints both totals,
   the per-scorer times, the AUROC of both and the ratio ncood / pytorch-ood.
3. Writes the dump to a features file and runs ``ncood analyze FILE --plugins <the 14>
   --json`` as a fresh process, printing its wall time and peak RSS (bounded memory).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("NCOOD_LOAD_PLUGINS", "")  # built-ins only, whatever else is installed

import torch  # noqa: E402
from bench_scorers import synthetic_dump  # noqa: E402
from pytorch_ood import detector as peers  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from ncood.analyze.driver import analyze_dump, select  # noqa: E402
from ncood.host.loading import host  # noqa: E402
from ncood.store.features import FeatureDump, save_features  # noqa: E402

FEATURE_LEVEL = [
    "entropy", "klm", "tscaling", "webo", "dice", "ash-p", "ash-b", "ash-s", "scale", "vra",
    "gradnorm", "nnguide", "gmm", "openmax",
]  # fmt: skip
# The same parameters on both sides (pytorch-ood takes fractions where ncood takes percent);
# both fit tscaling's temperature (ncood to the optimum, pytorch-ood by 50 L-BFGS steps).
SETTINGS: dict[str, dict[str, str]] = {}
BATCH = 1024


def peer_detectors(dump: FeatureDump) -> dict:
    """name → (fit(), predict(x tensor) -> outlier scores, which input: features or logits)."""
    weight, bias = torch.from_numpy(dump.head.weight), torch.from_numpy(dump.head.bias)
    layer = torch.nn.Linear(*reversed(weight.shape))
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)

    def head(maps):
        return layer(maps.flatten(1))

    def maps(x):
        return x[:, :, None, None]

    z, y = torch.from_numpy(dump.train.features), torch.from_numpy(dump.train.labels)
    logits = torch.from_numpy(dump.train.logits)
    num_classes = weight.shape[0]
    made = {}

    def add(name, detector, fit, predict, part):
        made[name] = (detector, fit, predict, part)

    d = peers.Entropy(None)
    add("entropy", d, lambda d: d, lambda d, x: d.predict_logits(x), "logits")
    d = peers.KLMatching(None)
    add("klm", d, lambda d: d.fit_logits(logits, y), lambda d, x: d.predict_logits(x), "logits")
    d = peers.TemperatureScaling(None)
    add(
        "tscaling", d, lambda d: d.fit_logits(logits, y), lambda d, x: d.predict_logits(x), "logits"
    )
    d = peers.WeightedEBO(None, torch.ones(num_classes))
    add("webo", d, lambda d: d, lambda d, x: d.predict_logits(x), "logits")
    d = peers.DICE(None, weight, bias, p=0.9)
    add("dice", d, lambda d: d.fit_features(z, y), lambda d, x: d.predict_features(x), "features")
    for variant in ("ash-p", "ash-b", "ash-s"):
        d = peers.ASH(None, head, variant=variant, percentile=0.9)
        add(variant, d, lambda d: d, lambda d, x: d.predict_feature_maps(maps(x)), "features")
    d = peers.SCALE(None, head, percentile=0.85)
    add("scale", d, lambda d: d, lambda d, x: d.predict_feature_maps(maps(x)), "features")
    d = peers.VRA(None, head, lower_percentile=0.1, upper_percentile=0.9)
    add(
        "vra",
        d,
        lambda d: d.fit_feature_maps(maps(z), y),
        lambda d, x: d.predict_feature_maps(maps(x)),
        "features",
    )
    d = peers.GradNorm(layer, param_filter=lambda name: name == "weight")
    add("gradnorm", d, lambda d: d, lambda d, x: d.predict(x), "features")
    d = peers.NNGuide(None, layer, k=100)
    add(
        "nnguide", d, lambda d: d.fit_features(z, y), lambda d, x: d.predict_features(x), "features"
    )
    d = peers.GMM(None)
    add("gmm", d, lambda d: d.fit_features(z, y), lambda d, x: d.predict_features(x), "features")
    d = peers.OpenMax(None)
    add("openmax", d, lambda d: d.fit_logits(logits, y), lambda d, x: d.predict_logits(x), "logits")
    # issue 27's (``--only lts,pnml``): LTS's p = 0.05 is ncood's percentile 95
    d = peers.LTS(None, layer, p=0.05)
    add("lts", d, lambda d: d, lambda d, x: d.predict_features(x), "features")
    d = peers.PNML(None, layer)
    add("pnml", d, lambda d: d.fit_features(z, y), lambda d, x: d.predict_features(x), "features")
    return made


def run_peer(dump: FeatureDump, entry) -> tuple[float, dict[str, np.ndarray]]:
    detector, fit, predict, part = entry
    batch = 256 if isinstance(detector, peers.GMM) else BATCH
    started = time.perf_counter()
    fit(detector)
    scores = {}
    with torch.no_grad():
        for name, split in {
            "test": dump.test,
            **{f"ood/{k}": v for k, v in dump.ood.items()},
        }.items():
            values = torch.from_numpy(split.part(part))
            scores[name] = (
                -torch.cat(
                    [predict(detector, values[i : i + batch]) for i in range(0, len(values), batch)]
                )
                .double()
                .numpy()
            )
    return time.perf_counter() - started, scores


def auroc(scores: dict[str, np.ndarray]) -> float:
    ood = next(k for k in scores if k.startswith("ood/"))
    labels = np.r_[np.ones(len(scores["test"])), np.zeros(len(scores[ood]))]
    return float(roc_auc_score(labels, np.r_[scores["test"], scores[ood]]))


def whole_command(path: Path, names: list[str]) -> tuple[float, float]:
    ncood = Path(sys.executable).with_name("ncood")
    command = [str(ncood), "analyze", str(path), "--plugins", ",".join(names), "--json", "--quiet"]
    for name, params in SETTINGS.items():
        if name in names:
            command += [arg for k, v in params.items() for arg in ("--set", f"{name}.{k}={v}")]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"ncood analyze failed: {done.stderr}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB → GiB
    return elapsed, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(FEATURE_LEVEL))
    parser.add_argument("--skip-command", action="store_true")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n]
    dump = synthetic_dump()
    print(f"dump: {len(dump.train):,} train × {dump.feature_dim}, {len(dump.test):,} test, "
          f"{sum(map(len, dump.ood.values())):,} OOD, {dump.num_classes} classes; "
          f"torch threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.1f}")  # fmt: skip

    scorers, _ = select(host(), names)
    started = time.perf_counter()
    outcome = analyze_dump(dump, scorers, [], SETTINGS)
    ours_total = time.perf_counter() - started
    if outcome.failures:
        raise SystemExit(f"ncood failed: {outcome.results['errors']}")

    entries = peer_detectors(dump)
    theirs_total, rows = 0.0, []
    for name in names:
        seconds, scores = run_peer(dump, entries[name])
        theirs_total += seconds
        ours = outcome.results["timings"][name]
        rows.append((name, ours, seconds, auroc(outcome.scores[name]), auroc(scores)))
        print(f"  {name:9s} ncood {ours:7.2f} s   pytorch-ood {seconds:7.2f} s   "
              f"AUROC {rows[-1][3]:.4f} / {rows[-1][4]:.4f}", flush=True)  # fmt: skip
    print(f"all {len(names)}: ncood {ours_total:.1f} s (fit + score + metrics), pytorch-ood "
          f"{theirs_total:.1f} s (fit + predict): ratio ncood / pytorch-ood = "
          f"{ours_total / theirs_total:.3f}; load {os.getloadavg()[0]:.1f}")  # fmt: skip

    if not args.skip_command:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "features.safetensors"
            save_features(path, dump)
            elapsed, peak = whole_command(path, names)
            size = path.stat().st_size / 2**20
        print(f"ncood analyze FILE ({size:.0f} MiB) --plugins <{len(names)}>: {elapsed:.1f} s, "
              f"peak RSS {peak:.2f} GiB")  # fmt: skip


if __name__ == "__main__":
    main()
