"""t-SNE: the subsample, the embedding's determinism, and the cache next to the analysis."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from nc_builders import analyzed_run

from ncood.errors import NcoodError
from ncood.report import tsne
from ncood.report.tsne import TsneSettings, cached_embedding, embed, pca, subsample
from ncood.store.features import load_features, save_features


def test_subsample_is_stratified_deterministic_and_capped():
    labels = np.repeat(np.arange(20), np.arange(1, 21) * 10)  # class c has 10(c+1) samples
    chosen = subsample(labels, max_points=300, max_classes=10, seed=3)
    assert np.array_equal(chosen, subsample(labels, 300, 10, seed=3))
    assert chosen.size <= 300 and set(labels[chosen]) == set(range(10))
    counts = np.bincount(labels[chosen], minlength=10)
    assert counts[9] == pytest.approx(10 * counts[0], rel=0.15)  # in proportion to class size
    assert np.array_equal(subsample(labels, 10_000, 2, seed=0), np.flatnonzero(labels < 2))


def test_pca_keeps_distances_when_the_data_fit_in_its_dimensions():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(40, 3)) @ rng.normal(size=(3, 60))  # rank 3 in 60 dimensions
    reduced = pca(data, 5)
    assert reduced.shape == (40, 5)
    gap = lambda x: np.linalg.norm(x[:, None] - x[None], axis=-1)  # noqa: E731
    np.testing.assert_allclose(gap(reduced), gap(data), atol=1e-9)


def test_embedding_is_reproducible_and_needs_a_few_points():
    rng = np.random.default_rng(1)
    points = np.concatenate([rng.normal(0, 1, (40, 8)), rng.normal(8, 1, (40, 8))])
    first, second = embed(points, seed=4), embed(points, seed=4)
    assert first.shape == (80, 2) and first.dtype == np.float32
    np.testing.assert_array_equal(first, second)
    with pytest.raises(NcoodError, match="at least 5 points"):
        embed(points[:3])


def test_cache_is_reused_then_invalidated_by_settings_or_features(tmp_path, monkeypatch):
    run = analyzed_run(tmp_path / "run", {1: 1.0}, with_layers=False)
    settings = TsneSettings(max_points=120, max_classes=4)
    embedding, labels = cached_embedding(run, 1, settings)
    assert embedding.shape == (labels.size, 2) and set(labels) == {0, 1, 2, 3}
    cache = run.analysis_dir(1) / tsne.CACHE_NAME
    assert cache.is_file()
    assert not list(cache.parent.glob(".*.tmp"))  # written atomically

    calls = []
    real_embed = tsne.embed
    monkeypatch.setattr(tsne, "embed", lambda *a, **k: calls.append(1) or real_embed(*a, **k))
    again, _ = cached_embedding(run, 1, settings)
    np.testing.assert_array_equal(again, embedding)
    assert calls == []
    cached_embedding(run, 1, TsneSettings(max_points=100, max_classes=4))
    assert calls == [1]

    dump = load_features(run.features(1))  # a changed features file: a new checksum
    shifted = replace(
        dump.test, features=np.asarray(dump.test.features) + 1.0
    )  # views are read-only
    save_features(run.features(1), replace(dump, test=shifted))
    cached_embedding(run, 1, TsneSettings(max_points=100, max_classes=4))
    assert calls == [1, 1]
