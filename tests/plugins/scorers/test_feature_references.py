"""The feature-level scorers no peer library implements, against their reference code's formula
written out independently here (OpenOOD's ResidualPostprocessor and RelationPostprocessor, the
CADRef authors' CARef.py and CADRef.py, in PyTorch as they are written) or the definition
computed the plain way, on noisy float32 clusters where scorers disagree."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from nc_builders import noisy_dump
from sklearn.covariance import EmpiricalCovariance
from sklearn.metrics.pairwise import cosine_similarity

from ncood.host.loading import host
from ncood.store.features import FeatureDump, Head, Split


@pytest.fixture(scope="module")
def dump() -> FeatureDump:
    return noisy_dump(num_classes=8, dim=20, seed=3)


def scores(dump: FeatureDump, name: str, **params) -> dict[str, np.ndarray]:
    scorer, _ = host().scorers().get(name).build({k: str(v) for k, v in params.items()})
    scorer.fit(dump.train, dump.head)
    return {"test": scorer.score(dump.test), **{k: scorer.score(v) for k, v in dump.ood.items()}}


def splits(dump: FeatureDump) -> dict[str, Split]:
    return {"test": dump.test, **dump.ood}


def t(values) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(values))


@pytest.mark.parametrize("dim", [5, 12])
def test_residual_is_openoods(dump, dim):
    """ResidualPostprocessor: u = −W⁺b, the eigenvectors of the empirical second moment about u
    sorted by decreasing eigenvalue, NS the ones after the first ``dim``, score −‖(f − u) NS‖."""
    weight, bias = dump.head.weight.astype(np.float64), dump.head.bias.astype(np.float64)
    origin = -np.linalg.pinv(weight) @ bias
    covariance = EmpiricalCovariance(assume_centered=True).fit(dump.train.features - origin)
    values, vectors = np.linalg.eig(covariance.covariance_)
    null_space = vectors.T[np.argsort(values * -1)[dim:]].T
    got = scores(dump, "residual", dim=dim)
    for name, split in splits(dump).items():
        expected = -np.linalg.norm((split.features - origin) @ null_space, axis=-1)
        np.testing.assert_allclose(got[name], expected, rtol=1e-5)


@pytest.mark.parametrize("center", [False, True])
def test_maxcosine_is_the_largest_cosine_to_a_class_mean(dump, center):
    train = dump.train.features.astype(np.float64)
    labels = dump.train.labels
    means = np.stack([train[labels == c].mean(axis=0) for c in range(8)])
    origin = train.mean(axis=0) if center else 0.0
    got = scores(dump, "maxcosine", center=center)
    for name, split in splits(dump).items():
        cosines = cosine_similarity(split.features.astype(np.float64) - origin, means - origin)
        np.testing.assert_allclose(got[name], cosines.max(axis=1), rtol=1e-12, atol=1e-14)


def reference_class_means(dump: FeatureDump) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """get_stat.get_features then get_mean_feature: the train features (and logits) put in
    one list per *predicted* class, and each list's mean."""
    features, logits = t(dump.train.features).double(), t(dump.train.logits).double()
    predicted = logits.argmax(1)
    groups = [features[predicted == c] for c in range(logits.shape[1])]
    logit_groups = [logits[predicted == c] for c in range(logits.shape[1])]
    return torch.stack([g.mean(dim=0) for g in groups]), logit_groups


def test_caref_is_the_authors_code(dump):
    means, _ = reference_class_means(dump)
    got = scores(dump, "caref")
    for name, split in splits(dump).items():
        feature, logit = t(split.features).double(), t(split.logits).double()
        class_ids = torch.argmax(torch.softmax(logit, dim=1), dim=1)
        expected = -(means[class_ids] - feature).norm(dim=1, p=1) / feature.norm(dim=1, p=1)
        np.testing.assert_allclose(got[name], expected.numpy(), rtol=1e-12)


def authors_logit_score(logits: torch.Tensor, method: str) -> torch.Tensor:
    if method == "maxlogit":
        return logits.max(dim=1).values
    if method == "energy":
        return torch.logsumexp(logits, dim=1)
    if method == "msp":
        return torch.softmax(logits, dim=1).max(dim=1).values
    top = max(logits.shape[-1] // 10, 10)  # gen, gamma 0.1
    probs = torch.sort(torch.softmax(logits, dim=1), dim=1).values[:, -top:]
    return 1 / torch.sum(probs**0.1 * (1 - probs) ** 0.1, dim=1)


@pytest.mark.parametrize("method", ["energy", "msp", "maxlogit", "gen"])
def test_cadref_is_the_authors_code(dump, method):
    """On logits / 5: where a probability is within 1e-16 of 1, 1 − p is rounding in either
    code (GEN's terms), not a formula to compare."""
    calm = {name: Split(s.features, s.logits / 5, s.labels) for name, s in splits(dump).items()}
    dump = FeatureDump(
        Split(dump.train.features, dump.train.logits / 5, dump.train.labels),
        calm.pop("test"),
        calm,
        dump.head,
    )
    means, logit_groups = reference_class_means(dump)
    train_scores = torch.cat([authors_logit_score(group, method) for group in logit_groups])
    global_mean = train_scores.mean()
    weight = t(dump.head.weight).double()
    got = scores(dump, "cadref", logit=method)
    for name, split in splits(dump).items():
        feature, logit = t(split.features).double(), t(split.logits).double()
        class_ids = torch.argmax(torch.softmax(logit, dim=1), dim=1)
        dist = feature - means[class_ids]
        sign = weight[class_ids].sign()
        positive = (dist * sign).clamp(min=0).norm(dim=1, p=1) / feature.norm(dim=1, p=1)
        negative = (dist * -sign).clamp(min=0).norm(dim=1, p=1) / feature.norm(dim=1, p=1)
        expected = -(positive / authors_logit_score(logit, method) + negative / global_mean)
        np.testing.assert_allclose(got[name], expected.numpy(), rtol=1e-9)


def test_caref_falls_back_to_the_labels_for_a_class_never_predicted(dump):
    """An early checkpoint may predict no train sample as some class: its mean is then the
    mean of the train features labelled with it, and the count is recorded."""
    logits = dump.train.logits.copy()
    logits[:, 2] = -1e3  # class 2 never predicted on train
    train = Split(dump.train.features, logits, dump.train.labels)
    scorer = host().scorers().get("caref").create()
    scorer.fit(train, dump.head)
    assert scorer.resolved_params == {"classes_from_labels": 1}
    features = dump.train.features.astype(np.float64)
    np.testing.assert_allclose(scorer.means[2], features[dump.train.labels == 2].mean(axis=0))
    assert np.all(np.isfinite(scorer.score(dump.test)))


def openood_relation(dump: FeatureDump, split: Split, power: int) -> np.ndarray:
    """relation_postprocessor.py: normalize, kernel (clamped cosine × probability agreement),
    edges above 0.03, Σ sign · |edge|^pow."""

    def normalize(feat):
        return feat / torch.sqrt((feat**2).sum(-1) + 1e-10).reshape(-1, 1)

    feat_train = normalize(t(dump.train.features))
    prob_train = torch.softmax(t(dump.train.logits), dim=1)
    feat, prob = normalize(t(split.features)), torch.softmax(t(split.logits), dim=1)
    rel = torch.clamp(feat @ feat_train.T, min=0.0) * (prob @ prob_train.T)
    rel_mask = (rel.abs() > 0.03) * rel
    return (rel_mask.sign() * rel_mask.abs() ** power).sum(-1).double().numpy()


@pytest.mark.parametrize("power", [1, 2])
def test_relation_is_openoods(dump, power):
    got = scores(dump, "relation", power=power)
    for name, split in splits(dump).items():
        np.testing.assert_allclose(got[name], openood_relation(dump, split, power), rtol=1e-4)


def test_relation_bank_fraction_is_a_seeded_share_of_the_train_split(dump):
    """bank_fraction = 0.25 scores as relation over the seeded quarter of the train rows."""
    scorer = host().scorers().get("relation").create(bank_fraction=0.25, seed=7)
    scorer.fit(dump.train, dump.head)
    n = len(dump.train)
    keep = np.sort(np.random.default_rng(7).choice(n, round(n / 4), replace=False))
    train = Split(dump.train.features[keep], dump.train.logits[keep], dump.train.labels[keep])
    shared = FeatureDump(train, dump.test, dump.ood, Head(dump.head.weight, dump.head.bias))
    assert scorer.resolved_params == {"bank_fraction": 0.25, "bank_size": len(keep)}
    np.testing.assert_allclose(
        scorer.score(dump.test), openood_relation(shared, dump.test, 1), rtol=1e-4
    )


def test_relations_memory_estimate_covers_its_bank_and_refuses_it_over_the_budget(dump):
    """ImageNet's whole train split would be a 15 GB bank: the estimate covers the bank it
    fits, so the analysis refuses it in one line before it is allocated; a share fits."""
    from ncood.analyze.driver import dump_shape
    from ncood.host.memory_budget import refusal
    from ncood_plugins.scorers.relation import BANK_BLOCK, QUERY_ROWS

    whole = host().scorers().get("relation").create()
    whole.fit(dump.train, dump.head)
    shape = dump_shape(dump)
    bank = whole.features.nbytes + whole.probs.nbytes
    blocks = 2 * 4 * QUERY_ROWS * BANK_BLOCK
    assert whole.memory_bytes(shape) == bank + blocks
    assert refusal("relation", whole, shape, bank + blocks - 1) is not None
    share = host().scorers().get("relation").create(bank_fraction=0.1)
    assert refusal("relation", share, shape, bank + blocks - 1) is None
    share.fit(dump.train, dump.head)
    assert share.memory_bytes(shape) == share.features.nbytes + share.probs.nbytes + blocks
