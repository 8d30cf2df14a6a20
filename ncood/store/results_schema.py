"""The shape of ``analysis/epoch-NNNN/results.json``, checked when the report reads it.

What plugins add under their own names is theirs; the keys ncood writes must have their
documented types, so that a tampered or truncated-then-repaired file is one line naming the
key rather than a ``TypeError`` inside a report section.
"""

from __future__ import annotations

from typing import Any

from ncood.errors import NcoodError
from ncood.store.run_schema import ANY, INT, NUMBER, TEXT, check

METRICS = {"auroc": NUMBER, "aupr_in": NUMBER, "aupr_out": NUMBER, "fpr95": NUMBER}
RESULTS = {
    "ood": {str: {str: METRICS}},
    "params": {str: {}},
    "timings": {str: (NUMBER, None)},
    "errors": {str: TEXT},
    "test": {"num_classes": INT, "feature_dim": INT},
    "features": TEXT,
    "epoch": INT,
    "scores_file": {"id": TEXT, "name": TEXT, "samples": {str: INT}},
    "nc": {str: ANY},
}


def check_results(results: Any, path: object) -> dict[str, Any]:
    check(results, RESULTS, str(path))
    if "ood" not in results:
        raise NcoodError(f"{path}: no 'ood' key; run `ncood analyze` again")
    for per_set in results["ood"].values():
        for scorer, metrics in per_set.items():
            for metric in METRICS:
                value = metrics.get(metric)
                if value is None or not 0.0 <= value <= 1.0:
                    raise NcoodError(
                        f"{path}: ood {scorer!r} {metric} must be a number in [0, 1], got {value!r}"
                    )
    return results
