"""Bad parameters, bad input files and failing scorers: one clear message, the others' results
kept, a non-zero exit."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from safetensors.numpy import save_file
from typer.testing import CliRunner

import ncood
from ncood.analyze.driver import analyze_dump, select
from ncood.cli import app
from ncood.errors import NcoodError
from ncood.host.loading import host
from ncood.store.features import load_features, save_features

runner = CliRunner()


@pytest.fixture
def features_file(tmp_path, tiny_dump):
    path = tmp_path / "features.safetensors"
    save_features(path, tiny_dump)  # D = 8, C = 4, OOD set "blobs"
    return path


def analyze(*args: str):
    return runner.invoke(app, ["analyze", *args, "--quiet"])


def test_parameters_reach_the_scorers_and_results(tmp_path, features_file):
    out = tmp_path / "out"
    result = analyze(
        str(features_file), "--plugins", "energy,vim,neco,mahalanobis", "--out", str(out),
        "--set", "vim.dim=3", "--set", "neco.dim=2", "--set", "energy.T=2",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    params = json.loads((out / "results.json").read_text())["params"]
    assert params["vim"] == {"dim": 3}
    assert params["neco"] == {"dim": 2, "maxlogit": False}
    assert params["energy"] == {"T": 2.0}
    assert params["mahalanobis"] == {"ridge": 1e-6}


def test_default_dimensions_are_recorded_as_used(tmp_path, features_file):
    out = tmp_path / "out"
    assert analyze(str(features_file), "--plugins", "vim,neco", "--out", str(out)).exit_code == 0
    params = json.loads((out / "results.json").read_text())["params"]
    assert params["vim"] == {"dim": 4}  # D/2 for D = 8
    assert params["neco"]["dim"] == 3  # C − 1 for C = 4


def test_unknown_parameter_names_the_known_ones(features_file):
    result = analyze(str(features_file), "--plugins", "vim", "--set", "vim.dims=3")
    assert result.exit_code == 1
    assert "scorer 'vim' has no parameter 'dims' (known: dim)" in result.output
    assert "Traceback" not in result.output


def test_unknown_scorer_names_the_known_ones(features_file):
    result = analyze(str(features_file), "--plugins", "msp,vimm")
    assert result.exit_code == 1
    assert "unknown plugin 'vimm'" in result.output and "neco" in result.output


def test_bad_parameter_type(features_file):
    result = analyze(str(features_file), "--plugins", "vim", "--set", "vim.dim=big")
    assert result.exit_code == 1 and "--set vim.dim=big" in result.output


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("vim.dim=8", "vim.dim must be between 1 and D − 1 = 7"),
        ("vim.dim=0", "vim.dim must be between 1 and D − 1 = 7"),
        ("neco.dim=8", "neco.dim must be between 1 and D − 1 = 7"),
        ("knn.k=1000", "knn.k = 1000 exceeds the 120 ID train samples"),
    ],
)
def test_refused_dimension_is_recorded_and_the_others_kept(
    tmp_path, features_file, setting, message
):
    out = tmp_path / "out"
    scorer = setting.split(".")[0]
    result = analyze(
        str(features_file), "--plugins", f"msp,{scorer}", "--set", setting, "--out", str(out)
    )
    assert result.exit_code == 1
    assert f"ncood: error: {scorer} failed: {message}" in result.stderr
    results = json.loads((out / "results.json").read_text())
    assert message in results["errors"][scorer]
    assert results["ood"]["blobs"]["msp"]["auroc"] > 0.9
    assert scorer not in results["ood"]["blobs"]
    from ncood.store.scores_file import load_scores_beside

    assert set(load_scores_beside(out, results)) == {"msp"}


class Exploding:
    def fit(self, train, head):
        pass

    def score(self, split):
        raise RuntimeError("boom")


class NotANumber:
    def fit(self, train, head):
        pass

    def score(self, split):
        values = np.zeros(len(split))
        values[:2] = np.nan
        return values


class WrongShape:
    def fit(self, train, head):
        pass

    def score(self, split):
        return np.zeros((len(split), 2))


@pytest.fixture
def broken_plugin():
    @ncood.hookimpl
    def register_scorers(register):
        register("explodes", Exploding)
        register("nans", NotANumber)
        register("shape", WrongShape)

    host().add(
        SimpleNamespace(register_scorers=register_scorers),
        "broken_test_plugin",
        distribution="tests",
        version="0",
        builtin=False,
    )
    yield
    host().remove("broken_test_plugin")


def test_a_raising_scorer_does_not_stop_the_others(tmp_path, features_file, broken_plugin):
    out = tmp_path / "out"
    result = analyze(
        str(features_file), "--plugins", "explodes,msp,nans,shape,energy", "--out", str(out)
    )
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("ncood: error:")]
    assert errors == [
        "ncood: error: explodes failed: RuntimeError: boom",
        "ncood: error: nans failed: score() returned 2 non-finite values for split 'test'",
        "ncood: error: shape failed: score() returned shape (60, 2) for split 'test', "
        "expected (60,)",
    ]
    results = json.loads((out / "results.json").read_text())
    assert results["errors"] == {
        "explodes": "RuntimeError: boom",
        "nans": "score() returned 2 non-finite values for split 'test'",
        "shape": "score() returned shape (60, 2) for split 'test', expected (60,)",
    }
    assert set(results["ood"]["blobs"]) == {"msp", "energy"}


def test_in_memory_dump_with_nan_features(tiny_dump):
    tiny_dump.ood["blobs"].features[0, 0] = np.nan
    outcome = analyze_dump(tiny_dump, select(host(), ["mahalanobis"])[0], [])
    assert outcome.failures == ["mahalanobis"]
    assert "non-finite values for split 'ood/blobs'" in outcome.results["errors"]["mahalanobis"]


def _tensors(dump) -> dict[str, np.ndarray]:
    tensors = {"head/weight": dump.head.weight, "head/bias": dump.head.bias}
    for name, split in dump.splits().items():
        tensors[f"{name}/features"] = split.features
        tensors[f"{name}/logits"] = split.logits
        tensors[f"{name}/labels"] = split.labels
    return {k: np.array(v) for k, v in tensors.items()}


def _set_inf(t):
    t["train/logits"][3, 1] = np.inf


def _set_neg_inf_rows(t):
    t["ood/blobs/features"][:5] = -np.inf


def _empty_ood(t):
    for key in [k for k in t if k.startswith("ood/blobs/")]:
        t[key] = t[key][:0]


def _narrow_logits(t):
    t["test/logits"] = t["test/logits"][:, :3]


def _short_bias(t):
    t["head/bias"] = t["head/bias"][:2]


def _no_labels(t):
    del t["train/labels"]


def _nan_head(t):
    t["head/weight"][1, :3] = np.nan


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_set_inf, "split 'train' has 1 non-finite logits"),
        (_set_neg_inf_rows, "split 'ood/blobs' has 40 non-finite features"),
        (_empty_ood, "split 'ood/blobs' is empty"),
        (_narrow_logits, "split 'test' has features (60, 8), logits (60, 3)"),
        (_short_bias, "head/weight must be C×D and head/bias C"),
        (_no_labels, "missing tensor 'train/labels'"),
        (_nan_head, "head/weight has 3 non-finite values"),
    ],
)
def test_bad_features_files(tmp_path, tiny_dump, mutate, message):
    tensors = _tensors(tiny_dump)
    mutate(tensors)
    path = tmp_path / "bad.safetensors"
    save_file(tensors, str(path))
    with pytest.raises(NcoodError) as caught:
        load_features(path)
    assert message in str(caught.value)
    result = analyze(str(path), "--plugins", "msp")
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


def test_not_safetensors_through_the_cli(tmp_path):
    path = tmp_path / "features.safetensors"
    path.write_bytes(b"\x00" * 64)
    result = analyze(str(path), "--plugins", "msp")
    assert result.exit_code == 1 and "is not a readable safetensors file" in result.output


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("energy.T=-1", "scorer 'energy': energy temperature T must be positive, got -1.0"),
        ("knn.k=0", "scorer 'knn': knn.k must be ≥ 1, got 0"),
        ("gen.gamma=1.5", "scorer 'gen': gen.gamma must be in (0, 1), got 1.5"),
    ],
)
def test_a_value_the_factory_refuses_is_one_line(features_file, setting, message):
    scorer = setting.split(".")[0]
    result = analyze(str(features_file), "--plugins", scorer, "--set", setting)
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
