"""The ``nc`` and ``nc_layers`` analyses: Neural Collapse NC1–NC5 of a features dump.

``nc`` measures the penultimate features (Papyan et al., 2020; Galanti et al., 2022; NECO's NC5,
Ben Ammar et al., 2024); ``nc_layers`` measures NC1 and NCC accuracy on the pooled output of each
ResNet stage when the dump holds them. Definitions and numerics: docs/neural-collapse.md; the
math lives in :mod:`ncood.maths.collapse`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import ncood
from ncood.maths import collapse as m
from ncood.maths.stats import predicted_classes
from ncood.store.features import FeatureDump, Split


def collapse_of(train: Split, test: Split, num_classes: int, part: str = "features"):
    """Class means, Σ_B, the train statistics and NCC on test, for one set of features
    (``part``: the penultimate ``"features"`` or a stage, ``"layers/<stage>"``), streamed."""
    moments = m.collapse_moments(train, num_classes, part)
    stats = m.means_of(moments)
    between = m.between_class(stats)
    passed = m.pass_of(train, moments, stats, between, part)
    return stats, between, passed, m.ncc_predictions(test, stats, part)


class NeuralCollapse:
    """NC1–NC5 of the penultimate features; the keys are listed in docs/neural-collapse.md.

    ``arrays`` keeps the class geometry (distances between class means, within-class variances,
    classifier-row/mean cosines) for the report's figure, saved beside results.json.
    """

    def run(self, dump: FeatureDump) -> dict[str, Any]:
        c = dump.num_classes
        stats, between, passed, ncc_test = collapse_of(dump.train, dump.test, c)
        weight = np.asarray(dump.head.weight, dtype=np.float64)
        centred = stats.centred
        net_train = predicted_classes(dump.train)
        net_test = predicted_classes(dump.test)
        agree_train = m.share(net_train == passed.ncc_predictions)
        agree_test = m.share(net_test == ncc_test)
        results: dict[str, Any] = {
            "nc1": passed.nc1,
            "nc1_rank": between.rank,
            "nc1_cdnv": m.cdnv(stats, passed.class_variance),
            "nc1_trace_ratio": passed.trace_within / between.trace if between.trace > 0 else None,
            "nc2_equinorm_means": m.equinorm(centred),
            "nc2_equinorm_weights": m.equinorm(weight),
            "nc2_equiangular_means": m.equiangularity(centred),
            "nc2_equiangular_weights": m.equiangularity(weight),
            "nc2_maxangle_means": m.max_angle(centred),
            "nc2_maxangle_weights": m.max_angle(weight),
            "nc3": m.self_duality(weight, centred),
            "nc4_train": 1.0 - agree_train,
            "nc4_test": 1.0 - agree_test,
            "ncc_agreement_train": agree_train,
            "ncc_agreement_test": agree_test,
            "model_acc_train": m.share(net_train == dump.train.labels),
            "model_acc_test": m.share(net_test == dump.test.labels),
            "ncc_acc_train": m.share(passed.ncc_predictions == dump.train.labels),
            "ncc_acc_test": m.share(ncc_test == dump.test.labels),
        }
        for name, split in dump.ood.items():
            ood_mean = m.feature_mean(split)
            results[f"nc5_orthodev/{name}"] = m.ood_orthodev(stats.means, ood_mean)
            results[f"nc5_orthodev_centred/{name}"] = m.ood_orthodev(
                centred, ood_mean - stats.global_mean
            )
        results["notes"] = passed.notes
        geometry = m.class_geometry(stats, passed.class_variance, weight)
        self.arrays = {k: v for k, v in geometry.items() if v is not None}
        return results


class NeuralCollapseLayers:
    """NC1 and NCC accuracy at each stage's pooled output: {stage: {...}}; {} without stages."""

    def run(self, dump: FeatureDump) -> dict[str, Any]:
        stages = sorted(set(dump.train.layers) & set(dump.test.layers))
        out: dict[str, Any] = {}
        for stage in stages:
            stats, between, passed, ncc_test = collapse_of(
                dump.train, dump.test, dump.num_classes, f"layers/{stage}"
            )
            out[stage] = {
                "feature_dim": int(dump.train.layers[stage].shape[1]),
                "nc1": passed.nc1,
                "nc1_rank": between.rank,
                "nc1_cdnv": m.cdnv(stats, passed.class_variance),
                "nc1_trace_ratio": (
                    passed.trace_within / between.trace if between.trace > 0 else None
                ),
                "ncc_acc_train": m.share(passed.ncc_predictions == dump.train.labels),
                "ncc_acc_test": m.share(ncc_test == dump.test.labels),
                "notes": passed.notes,
            }
        return out


@ncood.hookimpl
def register_analyses(register):
    register("nc", NeuralCollapse, "Neural Collapse NC1-NC5 of the penultimate features")
    register("nc_layers", NeuralCollapseLayers, "NC1 and NCC accuracy at each ResNet stage")
