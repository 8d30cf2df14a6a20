"""Golden tests of the Neural Collapse math: cases whose answers are known in closed form."""

from __future__ import annotations

import numpy as np
import pytest
from nc_reference import reference_nc

from ncood.errors import NcoodError
from ncood.maths import collapse as m
from ncood.maths.stats import predicted_classes


def simplex_means(num_classes: int, dim: int, radius: float, offset: float, rng) -> np.ndarray:
    """A simplex ETF of ‖m_c‖ = radius, shifted by a global mean of norm ``offset`` orthogonal
    to it, then rotated at random (so no coordinate is special)."""
    assert dim > num_classes
    etf = np.sqrt(num_classes / (num_classes - 1)) * (np.eye(num_classes) - 1 / num_classes)
    means = np.zeros((num_classes, dim))
    means[:, :num_classes] = radius * etf
    means[:, num_classes] = offset
    rotation, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    return means @ rotation.T, rotation


def exact_cloud(means: np.ndarray, rotation: np.ndarray, sigma: float):
    """2D samples per class at μ_c ± σ√D e_j: class means are exactly μ_c, Σ_W = σ² I exactly."""
    c, d = means.shape
    offsets = np.concatenate([np.eye(d), -np.eye(d)]) * sigma * np.sqrt(d) @ rotation.T
    features = (means[:, None, :] + offsets[None]).reshape(-1, d)
    return features, np.repeat(np.arange(c), 2 * d)


def measure(features, labels, num_classes):
    stats = m.class_means(features, labels, num_classes)
    between = m.between_class(stats)
    return stats, between, m.train_pass(features, labels, stats, between)


def test_exact_simplex_etf_is_fully_collapsed():
    rng = np.random.default_rng(1)
    c, d = 8, 20
    means, _ = simplex_means(c, d, radius=3.0, offset=5.0, rng=rng)
    labels = np.repeat(np.arange(c), 5)
    features = means[labels]
    stats, between, passed = measure(features, labels, c)
    weight = 0.7 * stats.centred  # a classifier that is the means, up to scale (NC3)
    assert between.rank == c - 1
    assert passed.nc1 == pytest.approx(0.0, abs=1e-20)
    assert m.cdnv(stats, passed.class_variance) == pytest.approx(0.0, abs=1e-20)
    for metric in (m.equinorm, m.equiangularity, m.max_angle):
        assert metric(stats.centred) == pytest.approx(0.0, abs=1e-12)
        assert metric(weight) == pytest.approx(0.0, abs=1e-12)
    assert m.pairwise_cosines(stats.centred) == pytest.approx(-1 / (c - 1))
    assert m.self_duality(weight, stats.centred) == pytest.approx(0.0, abs=1e-20)
    logits = features @ weight.T
    assert np.array_equal(passed.ncc_predictions, labels)
    assert np.array_equal(predicted_classes(logits), passed.ncc_predictions)


def test_isotropic_within_class_noise_gives_the_closed_form():
    """Σ_W = σ²I and a simplex of radius r: Σ_B has C−1 eigenvalues r²/(C−1), so
    NC1 = σ²(C−1)²/(C r²), CDNV = σ²D(C−1)/(2Cr²), Tr Σ_W / Tr Σ_B = σ²D/r²."""
    rng = np.random.default_rng(2)
    c, d, sigma, r = 6, 16, 0.3, 2.0
    means, rotation = simplex_means(c, d, r, offset=4.0, rng=rng)
    features, labels = exact_cloud(means, rotation, sigma)
    stats, between, passed = measure(features, labels, c)
    assert between.values == pytest.approx(np.full(c - 1, r**2 / (c - 1)), rel=1e-12)
    assert passed.nc1 == pytest.approx(sigma**2 * (c - 1) ** 2 / (c * r**2), rel=1e-10)
    assert m.cdnv(stats, passed.class_variance) == pytest.approx(
        sigma**2 * d * (c - 1) / (2 * c * r**2), rel=1e-10
    )
    assert passed.trace_within / between.trace == pytest.approx(sigma**2 * d / r**2, rel=1e-10)
    assert passed.class_variance == pytest.approx(np.full(c, sigma**2 * d), rel=1e-10)


def test_float32_features_far_from_the_origin_do_not_make_nc1_explode():
    """The usual code: float32 means, sample global mean, untruncated pinv(Σ_B). Rounding gives
    Σ_B a C-th eigenvalue ~1e-9 instead of 0 and NC1 explodes; ours keeps the top C−1."""
    rng = np.random.default_rng(0)
    c, d, sigma, r = 10, 64, 0.1, 1.0
    means, rotation = simplex_means(c, d, r, offset=50.0, rng=rng)
    features, labels = exact_cloud(means, rotation, sigma)
    x32 = features.astype(np.float32)
    exact = sigma**2 * (c - 1) ** 2 / (c * r**2)

    means32 = np.stack([x32[labels == k].mean(axis=0) for k in range(c)])
    centred = (means32 - x32.mean(axis=0)).astype(np.float64)
    residual = (x32 - means32[labels]).astype(np.float64)
    sigma_w = residual.T @ residual / len(x32)
    naive = np.trace(sigma_w @ np.linalg.pinv(centred.T @ centred / c)) / c
    assert naive > 1e4 * exact  # the failure this guards against, measured

    _, between, passed = measure(x32, labels, c)
    assert between.rank == c - 1
    assert passed.nc1 == pytest.approx(exact, rel=1e-4)


def test_fewer_dimensions_than_classes_uses_rank_d_and_says_so():
    rng = np.random.default_rng(3)
    c, d = 10, 4
    centres = rng.normal(0, 3, (c, d))
    labels = np.repeat(np.arange(c), 30)
    features = centres[labels] + rng.normal(0, 1, (labels.size, d))
    stats, between, passed = measure(features, labels, c)
    assert between.rank == d
    residual = features - stats.means[labels]
    sigma_w = residual.T @ residual / len(features)
    sigma_b = stats.centred.T @ stats.centred / c  # full rank D: Σ_B† is the inverse
    assert passed.nc1 == pytest.approx(np.trace(sigma_w @ np.linalg.inv(sigma_b)) / c, rel=1e-10)
    assert any("D=4 < C-1=9" in note and "simplex ETF" in note for note in passed.notes)


def test_a_class_without_sample_is_a_clear_error():
    features = np.zeros((4, 3))
    with pytest.raises(NcoodError, match=r"1 class\(es\) have no train sample \(2\)"):
        m.class_means(features, np.array([0, 1, 1, 0]), 3)


def test_a_single_class_is_a_clear_error():
    with pytest.raises(NcoodError, match="at least 2 classes"):
        m.class_means(np.zeros((3, 2)), np.zeros(3, int), 1)


def test_a_class_with_one_sample_has_zero_variance_and_a_note():
    rng = np.random.default_rng(4)
    c, d = 4, 6
    labels = np.array([0] * 20 + [1] * 20 + [2] * 20 + [3])
    features = rng.normal(0, 1, (labels.size, d)) + 4 * np.eye(c, d)[labels]
    stats, _, passed = measure(features, labels, c)
    assert passed.class_variance[3] == 0.0
    assert np.array_equal(stats.means[3], features[-1])
    assert any("classes [3] have one train sample" in note for note in passed.notes)
    np.testing.assert_allclose(
        passed.nc1,
        reference_nc(features, labels, features, features, labels, features, np.eye(c, d))["nc1"],
        rtol=1e-10,
    )


def test_coinciding_class_means_give_undefined_not_infinite():
    features = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    labels = np.array([0, 1, 2])
    stats, _, passed = measure(features, labels, 3)
    assert m.cdnv(stats, passed.class_variance) is None
    assert m.equiangularity(np.zeros((3, 2))) is None


def test_orthodev_of_orthogonal_and_parallel_means():
    means = np.array([[1.0, 0, 0], [0, 2.0, 0]])
    assert m.ood_orthodev(means, np.array([0, 0, 5.0])) == 0.0
    assert m.ood_orthodev(means, np.array([1.0, 1.0, 0])) == pytest.approx(np.sqrt(0.5))
    assert m.ood_orthodev(means, np.zeros(3)) is None


def test_chunked_pass_equals_the_reference_on_random_imbalanced_data(monkeypatch):
    monkeypatch.setattr(m, "CHUNK_ROWS", 97)  # several chunks, a ragged last one
    rng = np.random.default_rng(5)
    c, d = 7, 20
    labels = rng.integers(0, c, 900)
    features = (rng.normal(0, 1, (c, d)) * 3 + 10)[labels] + rng.normal(0, 1, (900, d))
    features = features.astype(np.float32)
    stats, between, passed = measure(features, labels, c)
    weight = rng.normal(size=(c, d))
    expected = reference_nc(
        features, labels, features @ weight.T, features, labels, features @ weight.T, weight
    )
    assert passed.nc1 == pytest.approx(expected["nc1"], rel=1e-10)
    assert m.cdnv(stats, passed.class_variance) == pytest.approx(expected["nc1_cdnv"], rel=1e-10)
    assert np.mean(passed.ncc_predictions == labels) == pytest.approx(expected["ncc_acc_train"])
    assert np.array_equal(m.ncc_predict(features, stats), passed.ncc_predictions)


def test_class_geometry_arrays():
    rng = np.random.default_rng(6)
    c, d = 5, 12
    means, _ = simplex_means(c, d, radius=2.0, offset=1.0, rng=rng)
    labels = np.repeat(np.arange(c), 3)
    stats, _, passed = measure(means[labels], labels, c)
    geometry = m.class_geometry(stats, passed.class_variance, stats.centred)
    off_diagonal = geometry["mean_distances"][~np.eye(c, dtype=bool)]
    assert off_diagonal == pytest.approx(np.full(c * (c - 1), 2.0 * np.sqrt(2 * c / (c - 1))))
    assert np.diag(geometry["weight_mean_cosines"]) == pytest.approx(np.ones(c))
    assert geometry["within_variance"] == pytest.approx(np.zeros(c), abs=1e-20)
