"""The ``nc`` and ``nc_layers`` analyses: every key, against the straightforward reference."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from nc_builders import noisy_dump
from nc_reference import reference_from_dump, reference_nc
from typer.testing import CliRunner

from ncood.cli import app
from ncood.store.atomic import write_json
from ncood.store.features import FeatureDump, Head, Split, save_features
from ncood_plugins.analyses.neural_collapse import NeuralCollapse, NeuralCollapseLayers

DOCS = Path(__file__).resolve().parents[3] / "docs" / "neural-collapse.md"


def documented_keys(ood_names) -> set[str]:
    """The keys of results["nc"] as docs/neural-collapse.md's table lists them: the one list."""
    keys: set[str] = set()
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        if line.startswith("| `"):
            for key in re.findall(r"`([^`]+)`", line.split("|")[1]):
                keys |= {key.replace("<ood set>", o) for o in ood_names} if "<" in key else {key}
    return keys


def test_every_key_matches_the_reference():
    dump = noisy_dump()
    got = NeuralCollapse().run(dump)
    expected = reference_from_dump(dump)
    assert set(got) == documented_keys(dump.ood)
    assert {"nc5_orthodev/far", "nc4_test", "ncc_acc_train"} <= set(got)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-4), key
    assert 0 < got["nc4_test"] < 0.5  # the case is not trivially separable
    assert got["nc4_train"] == pytest.approx(1 - got["ncc_agreement_train"])
    assert got["nc1_rank"] == 11
    assert got["notes"] == []


def test_centred_orthodev_uses_the_id_global_mean():
    dump = noisy_dump()
    got = NeuralCollapse().run(dump)
    x = dump.train.features.astype(np.float64)
    means = np.stack([x[dump.train.labels == k].mean(0) for k in range(dump.num_classes)])
    g_id = means.mean(0)
    g_ood = dump.ood["near"].features.astype(np.float64).mean(0) - g_id
    cosines = [
        abs((mu - g_id) @ g_ood) / np.linalg.norm(mu - g_id) / np.linalg.norm(g_ood) for mu in means
    ]
    assert got["nc5_orthodev_centred/near"] == pytest.approx(np.mean(cosines), rel=1e-10)


def test_results_are_strict_json_even_when_metrics_are_undefined(tmp_path):
    features = np.zeros((6, 4), np.float32)  # every class mean coincides: angles are undefined
    labels = np.array([0, 1, 2, 0, 1, 2])
    split = Split(features, np.zeros((6, 3), np.float32), labels)
    dump = FeatureDump(
        split,
        split,
        {"o": Split(features, split.logits, -np.ones(6, int))},
        Head(np.zeros((3, 4), np.float32), np.zeros(3, np.float32)),
    )
    got = NeuralCollapse().run(dump)
    assert got["nc1_cdnv"] is None and got["nc2_equiangular_means"] is None
    assert got["nc1_rank"] == 0 and got["nc1"] is None  # undefined, not "perfect collapse"
    write_json(tmp_path / "r.json", got)  # allow_nan=False: no NaN or infinity slipped through


def test_layers_measure_each_stage_like_the_penultimate_features():
    dump = noisy_dump(with_layers=True)
    got = NeuralCollapseLayers().run(dump)
    assert list(got) == ["layer1", "layer2"]
    for stage, values in got.items():
        train, test = dump.train.layers[stage], dump.test.layers[stage]
        expected = reference_nc(
            train,
            dump.train.labels,
            dump.train.logits,
            test,
            dump.test.labels,
            dump.test.logits,
            np.ones((dump.num_classes, train.shape[1])),
        )
        assert values["feature_dim"] == train.shape[1]
        for key in ("nc1", "nc1_cdnv", "ncc_acc_train", "ncc_acc_test"):
            assert values[key] == pytest.approx(expected[key], rel=1e-4), (stage, key)
    assert got["layer1"]["nc1_rank"] == 6 and "D=6 < C-1=11" in got["layer1"]["notes"][0]
    assert NeuralCollapseLayers().run(noisy_dump()) == {}


def test_analyze_a_features_file_gives_the_issue_keys(tmp_path):
    dump = noisy_dump(with_layers=True)
    path = tmp_path / "features.safetensors"
    save_features(path, dump)
    result = CliRunner().invoke(app, ["analyze", str(path), "--plugins", "nc", "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    nc = json.loads(result.output)["nc"]
    expected = reference_from_dump(dump)
    assert set(nc) == documented_keys(dump.ood)
    for key, value in expected.items():
        assert nc[key] == pytest.approx(value, rel=1e-4), key
