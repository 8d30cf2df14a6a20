"""Every scorer's formula against answers computed by hand on tiny matrices, and against an
independent, straightforward NumPy / scikit-learn implementation on random data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp, softmax
from sklearn.covariance import EmpiricalCovariance
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from ncood.host.loading import host
from ncood.store.features import Head, Split


def fitted(name: str, train: Split, head: Head | None, **params):
    scorer, _ = host().scorers().get(name).build({k: str(v) for k, v in params.items()})
    scorer.fit(train, head)
    return scorer


def split(features, weight=None, bias=None, labels=None, logits=None) -> Split:
    features = np.asarray(features, np.float32)
    if logits is None:
        logits = features @ np.asarray(weight, np.float32).T + np.asarray(bias, np.float32)
    if labels is None:
        labels = np.zeros(len(features), np.int64)
    return Split(features, np.asarray(logits, np.float32), np.asarray(labels, np.int64))


# Two classes in 2-D: class 0 around (0, 0), class 1 around (10, 0), each a unit "plus" sign.
# Tied within-class covariance = diag(0.5, 0.5), so Σ⁻¹ = 2·I.
PLUS = np.array([[1, 0], [-1, 0], [0, 1], [0, -1]], float)
GAUSS_TRAIN = split(
    np.vstack([PLUS, PLUS + [10, 0]]), logits=np.zeros((8, 2)), labels=[0] * 4 + [1] * 4
)
GAUSS_TEST = split([[2, 0], [5, 3]], logits=np.zeros((2, 2)))


def test_mahalanobis_by_hand():
    scorer = fitted("mahalanobis", GAUSS_TRAIN, None, ridge=0)
    # (2,0): 2·‖(2,0)‖² = 8 to class 0; (5,3): 2·34 = 68 to either class.
    np.testing.assert_allclose(scorer.score(GAUSS_TEST), [-8.0, -68.0], rtol=1e-12)


def test_mahalanobis_ridge_is_relative_to_the_mean_variance():
    scorer = fitted("mahalanobis", GAUSS_TRAIN, None, ridge=1.0)
    # Σ + 1·(tr Σ / D)·I = diag(1, 1): plain squared distances.
    np.testing.assert_allclose(scorer.score(GAUSS_TEST), [-4.0, -34.0], rtol=1e-12)


def test_l2_by_hand():
    scorer = fitted("l2", GAUSS_TRAIN, None)
    np.testing.assert_allclose(scorer.score(GAUSS_TEST), [-2.0, -np.sqrt(34.0)], rtol=1e-12)


def test_rmds_by_hand():
    # Global mean (5, 0); global covariance diag(204/8, 4/8) = diag(25.5, 0.5).
    scorer = fitted("rmds", GAUSS_TRAIN, None, ridge=0)
    md0 = np.array([9 / 25.5, 0 + 9 / 0.5])  # (2,0) − (5,0) = (−3,0); (5,3) − (5,0) = (0,3)
    np.testing.assert_allclose(scorer.score(GAUSS_TEST), md0 - [8.0, 68.0], rtol=1e-12)


def test_vim_by_hand():
    # W = I, b = 0 → u = 0. Second moment about u = diag(4.5, 0.5): principal axis x, residual y.
    weight, bias = np.eye(2), np.zeros(2)
    train = split([[3, 0], [-3, 0], [0, 1], [0, -1]], weight, bias, labels=[0, 1, 1, 0])
    scorer = fitted("vim", train, Head(weight, bias), dim=1)
    # mean max-logit = (3 + 0 + 1 + 0)/4 = 1; mean residual = (0 + 0 + 1 + 1)/4 = 0.5 → α = 2.
    assert scorer.alpha == pytest.approx(2.0)
    test = split([[1, 2]], weight, bias)
    expected = np.log(np.exp(1) + np.exp(2)) - 2.0 * 2.0
    np.testing.assert_allclose(scorer.score(test), [expected], rtol=1e-6)


def test_vim_origin_uses_the_bias():
    # W = I, b = (−1, −1): u = −W⁺b = (1, 1); the features are seen from (1, 1).
    weight, bias = np.eye(2), -np.ones(2)
    train = split([[4, 1], [-2, 1], [1, 2], [1, 0]], weight, bias, labels=[0, 1, 1, 0])
    scorer = fitted("vim", train, Head(weight, bias), dim=1)
    np.testing.assert_allclose(scorer.origin, [1.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(scorer.residual_norm(np.array([[5, 4]], np.float32)), [3.0])


def test_neco_by_hand():
    # Mean 0, both stds √2.5; the standardised covariance [[1, .6], [.6, 1]] has its first
    # principal axis along (1, 1)/√2.
    train = split([[2, 2], [-2, -2], [1, -1], [-1, 1]], logits=np.zeros((4, 2)))
    scorer = fitted("neco", train, None, dim=1)
    test = split([[3, 1], [1, -1], [2, 2]], logits=[[1, 5], [0, 0], [2, 0]])
    np.testing.assert_allclose(scorer.score(test), [4 / np.sqrt(20), 0.0, 1.0], atol=1e-6)
    with_logit = fitted("neco", train, None, dim=1, maxlogit=True)
    np.testing.assert_allclose(with_logit.score(test), [5 * 4 / np.sqrt(20), 0.0, 2.0], atol=1e-6)


def test_knn_by_hand():
    # Normalized bank at 0°, 90°, 180°; from 0° the 2nd nearest is at distance √2.
    train = split([[2, 0], [0, 5], [-1, 0]], logits=np.zeros((3, 2)))
    scorer = fitted("knn", train, None, k=2)
    test = split([[7, 0], [0, 1]], logits=np.zeros((2, 2)))
    np.testing.assert_allclose(scorer.score(test), [-np.sqrt(2), -np.sqrt(2)], rtol=1e-6)
    np.testing.assert_allclose(fitted("knn", train, None, k=1).score(test), [0, 0], atol=1e-3)
    np.testing.assert_allclose(fitted("knn", train, None, k=3).score(test), [-2, -np.sqrt(2)])


def test_react_by_hand():
    weight, bias = np.eye(2), np.array([0.0, 1.0])
    train = split([[0, 1], [2, 3]], weight, bias)  # activations 0,1,2,3: 50th percentile 1.5
    scorer = fitted("react", train, Head(weight, bias), percentile=50)
    assert scorer.threshold == pytest.approx(1.5)
    test = split([[3, 0.5]], weight, bias)  # clipped to (1.5, 0.5) → logits (1.5, 1.5)
    np.testing.assert_allclose(scorer.score(test), [np.log(2 * np.exp(1.5))], rtol=1e-6)


def test_gen_by_hand():
    logits = np.log([[3.0, 1.0]])  # softmax (0.75, 0.25)
    test = split(np.zeros((1, 1)), logits=logits)
    both = fitted("gen", test, None, gamma=0.1)
    np.testing.assert_allclose(both.score(test), [-2 * 0.1875**0.1], rtol=1e-7)
    top1 = fitted("gen", test, None, gamma=0.1, M=1)
    np.testing.assert_allclose(top1.score(test), [-(0.1875**0.1)], rtol=1e-7)


def test_nci_by_hand():
    weight, bias = np.eye(2), np.zeros(2)
    train = split([[1, 0], [-1, 0], [0, 2], [0, -2]], weight, bias)  # global mean 0
    scorer = fitted("nci", train, Head(weight, bias), alpha=0.1)
    test = split([[3, 4]], weight, bias)  # ŷ = 1: ⟨(0,1), (3,4)⟩/5 = 0.8; 0.1·‖f‖₁ = 0.7
    np.testing.assert_allclose(scorer.score(test), [1.5], rtol=1e-6)


def test_fdbd_by_hand():
    weight, bias = np.array([[1.0, 0], [0, 1], [-1, 0]]), np.zeros(3)
    train = split([[1, 0], [-1, 0]], weight, bias)  # global mean 0
    scorer = fitted("fdbd", train, Head(weight, bias))
    # f = (3,4): z = (3, 4, −3), ŷ = 1; margins 1 and 7, both over ‖w₁ − w_c‖ = √2.
    test = split([[3, 4]], weight, bias)
    expected = (1 / np.sqrt(2) + 7 / np.sqrt(2)) / 2 / 5
    np.testing.assert_allclose(scorer.score(test), [expected], rtol=1e-6)


def test_she_by_hand_with_the_fallback():
    features = [[2, 0], [0, 2], [0, 4], [0, 2], [5, 5], [7, 7]]
    labels = [0, 0, 1, 1, 2, 2]
    logits = [[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 1, 0], [1, 0, 0], [1, 0, 0]]
    train = split(features, labels=labels, logits=logits)
    scorer = fitted("she", train, None)
    # Class 0: only (2,0) is right → (2,0). Class 1: (0,3). Class 2 never right → mean (6,6).
    np.testing.assert_allclose(scorer.patterns, [[2, 0], [0, 3], [6, 6]])
    test = split([[1, 5], [1, 1]], logits=[[0, 1, 0], [0, 0, 1]])
    np.testing.assert_allclose(scorer.score(test), [15.0, 12.0])


# --- against an independent, straightforward implementation on random data -----------------


@pytest.fixture(scope="module")
def random_problem():
    rng = np.random.default_rng(7)
    num_classes, dim = 5, 12
    means = rng.normal(0, 3, (num_classes, dim))
    labels = np.repeat(np.arange(num_classes), 40)
    weight = means / 3 + rng.normal(0, 0.3, (num_classes, dim))
    bias = rng.normal(0, 1, num_classes)
    train_x = means[labels] + rng.normal(0, 1, (labels.size, dim)) @ rng.normal(0, 0.5, (dim, dim))
    test_x = rng.normal(0, 3, (60, dim))
    train = split(train_x, weight, bias, labels=labels)
    test = split(test_x, weight, bias)
    return train, test, Head(weight.astype(np.float32), bias.astype(np.float32))


def test_mahalanobis_matches_a_per_class_loop(random_problem):
    train, test, head = random_problem
    x, y, q = (a.astype(np.float64) for a in (train.features, train.labels, test.features))
    means = [x[y == c].mean(axis=0) for c in range(5)]
    centred = np.vstack([x[y == c] - means[c] for c in range(5)])
    precision = EmpiricalCovariance(assume_centered=True).fit(centred).precision_
    expected = -np.min([np.einsum("ij,jk,ik->i", q - m, precision, q - m) for m in means], axis=0)
    scorer = fitted("mahalanobis", train, head, ridge=0)
    np.testing.assert_allclose(scorer.score(test), expected, rtol=1e-8)


def test_rmds_matches_a_per_class_loop(random_problem):
    train, test, head = random_problem
    x, y, q = (a.astype(np.float64) for a in (train.features, train.labels, test.features))
    means = [x[y == c].mean(axis=0) for c in range(5)]
    centred = np.vstack([x[y == c] - means[c] for c in range(5)])
    precision = np.linalg.inv(np.cov(centred.T, bias=True))
    global_precision = np.linalg.inv(np.cov(x.T, bias=True))
    md0 = np.einsum("ij,jk,ik->i", q - x.mean(0), global_precision, q - x.mean(0))
    relative = [np.einsum("ij,jk,ik->i", q - m, precision, q - m) - md0 for m in means]
    expected = -np.min(relative, axis=0)
    np.testing.assert_allclose(
        fitted("rmds", train, head, ridge=0).score(test), expected, rtol=1e-7
    )


def test_vim_matches_the_reference_algorithm(random_problem):
    train, test, head = random_problem
    w, b = head.weight.astype(np.float64), head.bias.astype(np.float64)
    x = train.features.astype(np.float64)
    u = -np.linalg.pinv(w) @ b
    covariance = EmpiricalCovariance(assume_centered=True).fit(x - u).covariance_
    eigvals, eigvecs = np.linalg.eig(covariance)
    residual_space = eigvecs.T[np.argsort(-eigvals)[6:]].T
    alpha = (
        train.logits.max(axis=1).mean() / np.linalg.norm((x - u) @ residual_space, axis=1).mean()
    )
    q = test.features.astype(np.float64)
    expected = logsumexp(test.logits.astype(np.float64), axis=1) - alpha * np.linalg.norm(
        (q - u) @ residual_space, axis=1
    )
    scorer = fitted("vim", train, head)  # D = 12 → the paper's rule gives dim = 6
    assert scorer.resolved_params == {"dim": 6}
    np.testing.assert_allclose(scorer.score(test), expected, rtol=1e-4)


def test_neco_matches_scaler_and_pca(random_problem):
    train, test, head = random_problem
    scaler = StandardScaler().fit(train.features.astype(np.float64))
    pca = PCA(train.features.shape[1]).fit(scaler.transform(train.features.astype(np.float64)))
    z = scaler.transform(test.features.astype(np.float64))
    reduced = pca.transform(z)
    expected = np.linalg.norm(reduced[:, :3], axis=1) / np.linalg.norm(reduced, axis=1)
    scorer = fitted("neco", train, head, dim=3)
    np.testing.assert_allclose(scorer.score(test), expected, rtol=1e-4)
    assert fitted("neco", train, head).resolved_params["dim"] == 4  # C − 1


def test_knn_matches_brute_force(random_problem):
    train, test, head = random_problem

    def unit(a):
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    bank, q = unit(train.features.astype(np.float64)), unit(test.features.astype(np.float64))
    distances = np.sort(np.linalg.norm(q[:, None, :] - bank[None, :, :], axis=2), axis=1)
    np.testing.assert_allclose(
        fitted("knn", train, head, k=7).score(test), -distances[:, 6], atol=1e-5
    )


def test_msp_gen_energy_agree_with_softmax_definitions(random_problem):
    train, test, head = random_problem
    logits = test.logits.astype(np.float64)
    p = softmax(logits, axis=1)
    np.testing.assert_allclose(fitted("msp", train, head).score(test), p.max(axis=1))
    top3 = np.sort(p, axis=1)[:, -3:]
    np.testing.assert_allclose(
        fitted("gen", train, head, M=3, gamma=0.5).score(test),
        -np.sum(np.sqrt(top3 * (1 - top3)), axis=1),
        rtol=1e-10,
    )


def test_nci_fdbd_she_match_loops(random_problem):
    train, test, head = random_problem
    w = head.weight.astype(np.float64)
    x, q = train.features.astype(np.float64), test.features.astype(np.float64)
    mu = x.mean(axis=0)
    nci, fdbd, she = [], [], []
    train_pred = train.logits.argmax(1)
    patterns = [x[(train.labels == c) & (train_pred == c)].mean(axis=0) for c in range(5)]
    for f, z in zip(q, test.logits.astype(np.float64), strict=True):
        c = int(np.argmax(z))
        nci.append(w[c] @ (f - mu) / np.linalg.norm(f - mu) + 0.01 * np.abs(f).sum())
        others = [j for j in range(5) if j != c]
        distances = [(z[c] - z[j]) / np.linalg.norm(w[c] - w[j]) for j in others]
        fdbd.append(np.mean(distances) / np.linalg.norm(f - mu))
        she.append(f @ patterns[c])
    np.testing.assert_allclose(fitted("nci", train, head, alpha=0.01).score(test), nci, rtol=1e-5)
    np.testing.assert_allclose(fitted("fdbd", train, head).score(test), fdbd, rtol=1e-5)
    np.testing.assert_allclose(fitted("she", train, head).score(test), she, rtol=1e-5)


@pytest.mark.parametrize("shape", [(5, 12), (12, 5), (4, 4)])
def test_vim_origin_equals_the_pseudo_inverse(shape):
    from ncood_plugins.scorers.vim import pseudo_inverse_times

    rng = np.random.default_rng(3)
    weight, bias = rng.normal(size=shape), rng.normal(size=shape[0])
    np.testing.assert_allclose(
        pseudo_inverse_times(weight, bias), np.linalg.pinv(weight) @ bias, atol=1e-12
    )
    rank_deficient = np.vstack([weight, weight[:1]])  # a repeated row: rank < rows
    extended = np.append(bias, 0.5)
    np.testing.assert_allclose(
        pseudo_inverse_times(rank_deficient, extended),
        np.linalg.pinv(rank_deficient) @ extended,
        atol=1e-10,
    )
