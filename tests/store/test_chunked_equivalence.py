"""Streamed analysis equals the in-memory one: every built-in scorer, ``nc`` and ``nc_layers``,
on a file read in chunks of 1, 7 and more than N rows (each chunk cut into pieces for the
threads), against the same dump held in memory and processed as one block."""

from __future__ import annotations

import json

import numpy as np
import pytest
from nc_builders import noisy_dump

import ncood
import ncood.store.chunked as chunked
import ncood.store.features as features_module
import ncood_plugins.scorers.knn as knn_module
from ncood.analyze.driver import analyze_dump, select
from ncood.host.loading import host
from ncood.store.features import load_features, save_features

FLOAT32_PRODUCTS = {"knn", "vim", "neco", "nnguide"}
SETTINGS = {"vim": {"dim": "10"}, "neco": {"dim": "6"}}


def analyzed(dump):
    scorers, analyses = select(host(), None)
    outcome = analyze_dump(dump, scorers, analyses, SETTINGS)
    assert not outcome.results["errors"], outcome.results["errors"]
    return outcome


@pytest.fixture(scope="module")
def dumps(tmp_path_factory):
    dump = noisy_dump(num_classes=7, dim=24, with_layers=True, seed=3)
    path = tmp_path_factory.mktemp("chunked") / "features.safetensors"
    save_features(path, dump)
    return dump, path


@pytest.fixture(scope="module")
def in_memory(dumps):
    dump, _ = dumps
    return analyzed(dump)


def flat(results: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in results.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[prefix + key] = float(value)
    return out


@pytest.mark.parametrize("rows", [1, 7, 100_000])
def test_a_chunked_run_equals_the_in_memory_one(dumps, in_memory, rows, monkeypatch):
    _, path = dumps
    monkeypatch.setattr(features_module, "CHUNK_ROWS", rows)
    monkeypatch.setattr(chunked, "MIN_PIECE_ROWS", 1)  # pieces for the threads even at 7 rows
    monkeypatch.setattr(knn_module, "QUERY_BLOCK", rows)
    monkeypatch.setattr(knn_module, "BANK_BLOCK", max(rows, 50))  # running top-k across blocks
    streamed = analyzed(load_features(path))

    on_features = set(ncood.list_scorers(needs_network=False, needs_members=False))
    assert set(streamed.scores) == set(in_memory.scores) == on_features
    for scorer, per_split in in_memory.scores.items():
        # knn's similarities and vim's, neco's projections are float32 products (by design,
        # docs/scorers.md): a 1-row block is a gemv, whose rounding differs from a gemm's in
        # the last float32 bits. Everything else is float64 and agrees to 1e-9.
        tolerance = 1e-5 if scorer in FLOAT32_PRODUCTS else 1e-9
        for split, values in per_split.items():
            np.testing.assert_allclose(
                streamed.scores[scorer][split],
                values,
                rtol=tolerance,
                atol=tolerance * np.abs(values).max(),
                err_msg=scorer,
            )
    for ood_set, per_scorer in in_memory.results["ood"].items():
        for scorer, metrics in per_scorer.items():
            got = streamed.results["ood"][ood_set][scorer]
            assert got["auroc"] == pytest.approx(metrics["auroc"], abs=1e-9), scorer

    expected = flat({k: in_memory.results[k] for k in ("nc", "nc_layers")})
    got = flat({k: streamed.results[k] for k in ("nc", "nc_layers")})
    assert got.keys() == expected.keys() and len(expected) > 30
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-10, abs=1e-14), key
    assert streamed.results["params"]["react"] == in_memory.results["params"]["react"]


def test_device_option_reaches_the_scorers_that_have_one(dumps):
    from typer.testing import CliRunner

    from ncood.cli import app

    _, path = dumps
    command = ["analyze", str(path), "--plugins", "knn,msp", "--json", "--quiet"]
    result = CliRunner().invoke(app, [*command, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    params = json.loads(result.output)["params"]["knn"]
    assert params["device"] == "cpu" and params["bank_size"] == 607, params  # every train row
    result = CliRunner().invoke(app, [*command, "--device", "nowhere"])
    assert result.exit_code == 1 and "'nowhere'" in result.output  # refused before any work
    result = CliRunner().invoke(app, [*command, "--set", "knn.device=nowhere"])
    assert result.exit_code == 1
    assert "knn.device='nowhere' is not usable here" in result.output


def test_knn_bank_fraction_is_a_seeded_subset_searched_exactly(dumps, monkeypatch):
    from ncood_plugins.scorers.knn import KNN

    monkeypatch.setattr(knn_module, "BANK_BLOCK", 64)
    dump, path = dumps
    train = load_features(path).train
    scorer = KNN(k=5, bank_fraction=0.25, seed=3)
    scorer.fit(train, dump.head)
    again = KNN(k=5, bank_fraction=0.25, seed=3)
    again.fit(dump.train, dump.head)
    assert scorer.resolved_params["bank_size"] == round(0.25 * len(train))
    np.testing.assert_array_equal(scorer.bank.numpy(), again.bank.numpy())  # same rows
    unit = dump.train.features / np.linalg.norm(dump.train.features, axis=1, keepdims=True)
    rows = [
        np.flatnonzero(np.all(np.isclose(unit, b, atol=1e-6), axis=1))[0]
        for b in scorer.bank.numpy()
    ]
    assert len(set(rows)) == len(rows) and rows == sorted(rows)
    queries = dump.test.features / np.linalg.norm(dump.test.features, axis=1, keepdims=True)
    distances = np.sort(np.linalg.norm(queries[:, None] - unit[rows][None], axis=2), axis=1)
    np.testing.assert_allclose(scorer.score(dump.test), -distances[:, 4], atol=1e-5)
    other = KNN(k=5, bank_fraction=0.25, seed=4)
    other.fit(dump.train, dump.head)
    assert not np.array_equal(other.bank.numpy(), scorer.bank.numpy())


def test_knn_warns_once_naming_the_cost_of_a_long_exact_search(tiny_dump, capsys):
    from ncood_plugins.scorers.knn import KNN

    scorer = KNN(k=3)
    scorer.fit(tiny_dump.train, tiny_dump.head)
    scorer.warn_if_slow(total=100_000, done=1_000, seconds=1.5)  # 150 s expected: quiet
    assert capsys.readouterr().err == ""
    scorer.warn_if_slow(total=100_000, done=1_000, seconds=6.0)  # 10 min expected
    scorer.warn_if_slow(total=100_000, done=2_000, seconds=12.0)
    err = capsys.readouterr().err
    assert err.count("ncood: warning: knn: exact search of 100,000 queries") == 1
    assert "about 10 min" in err and "knn.bank_fraction=0.01" in err
