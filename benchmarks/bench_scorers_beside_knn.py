"""The class-mean, relation and logit-scaling scorers (issue 27) on the CIFAR-100-sized
synthetic dump of ``bench_scorers.py``, in one process, beside ``knn`` (the exact search they
are compared with: relation is one too).

    .venv/bin/python benchmarks/bench_scorers_beside_knn.py

Prints each scorer's fit + score + metrics time (results.json's ``timings``), its ratio to
knn's measured in the same run, and its AUROC against the dump's OOD set.
"""

from __future__ import annotations

import os

os.environ.setdefault("NCOOD_LOAD_PLUGINS", "")  # built-ins only, whatever else is installed

from bench_scorers import synthetic_dump  # noqa: E402

from ncood.analyze.driver import analyze_dump, select  # noqa: E402
from ncood.host.loading import host  # noqa: E402

CLASS_MEANS_AND_MORE = [
    "residual",
    "maxcosine",
    "caref",
    "cadref",
    "relation",
    "lts",
    "pnml",
    "graduncertainty",
]
BASELINE = "knn"


def main() -> None:
    dump = synthetic_dump()
    print(f"dump: {len(dump.train):,} train × {dump.feature_dim}, {len(dump.test):,} test, "
          f"{sum(map(len, dump.ood.values())):,} OOD, {dump.num_classes} classes; "
          f"load {os.getloadavg()[0]:.1f}")  # fmt: skip
    scorers, _ = select(host(), [BASELINE, *CLASS_MEANS_AND_MORE])
    outcome = analyze_dump(dump, scorers, [], {})
    if outcome.failures:
        raise SystemExit(f"ncood failed: {outcome.results['errors']}")
    timings = outcome.results["timings"]
    ood_set = next(iter(outcome.results["ood"]))
    for name in [BASELINE, *CLASS_MEANS_AND_MORE]:
        auroc = outcome.results["ood"][ood_set][name]["auroc"]
        print(f"  {name:9s} {timings[name]:7.2f} s   ×{timings[name] / timings[BASELINE]:5.2f} "
              f"{BASELINE}   AUROC {auroc:.4f}")  # fmt: skip
    print(f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
