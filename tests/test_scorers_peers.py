"""Each feature-level scorer of issue 19 against its pytorch-ood 0.4.0 peer, with the same
parameters, on one small synthetic dump: the AUROCs (ID positive) agree to 1e-3.

pytorch-ood returns outlier scores (higher = OOD); ncood's are negated relative to them.
Where pytorch-ood works on feature maps (ASH, SCALE, VRA), it is fed the penultimate
features as N×D×1×1 maps (what ncood shapes by default), and, for ASH and SCALE, real maps.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_ood import detector as peers  # a dev dependency: the peers must run on CI
from sklearn.metrics import roc_auc_score

from ncood.features import FeatureDump, Head, Split
from ncood.plugins import host

NUM_CLASSES, DIM = 6, 24
TOLERANCE = 1e-3


def synthetic_dump(seed: int = 0, maps: int = 0) -> FeatureDump:
    """Positive, continuous features (no ties) around class patterns; OOD from fresh patterns.
    With ``maps`` > 0, each split also holds D×``maps`` "feature maps" whose spatial mean is
    the features, stored flattened channel-major as ``layers/maps``."""
    rng = np.random.default_rng(seed)
    means = rng.gamma(2.0, 0.6, (NUM_CLASSES, DIM))
    weight = (means - means.mean(axis=0)) * 0.8 + rng.normal(0, 0.05, (NUM_CLASSES, DIM))
    bias = rng.normal(0, 0.2, NUM_CLASSES)

    def make(centres: np.ndarray, labels: np.ndarray) -> Split:
        features = np.abs(centres + rng.normal(0, 0.9, centres.shape)).astype(np.float32)
        layers = {}
        if maps:
            spread = rng.gamma(4.0, 0.25, (len(features), DIM, maps)).astype(np.float32)
            spread /= spread.mean(axis=2, keepdims=True)
            stage = features[:, :, None] * spread
            layers["maps"] = stage.reshape(len(features), -1)
            features = stage.mean(axis=2)
        logits = features.astype(np.float64) @ weight.T + bias
        return Split(features, logits.astype(np.float32), labels, layers)

    def in_distribution(n: int) -> Split:
        labels = rng.integers(0, NUM_CLASSES, n)
        return make(means[labels], labels)

    ood_centres = rng.gamma(2.0, 0.6, (400, DIM))
    return FeatureDump(
        in_distribution(900),
        in_distribution(400),
        {"fresh": make(ood_centres, np.full(400, -1))},
        Head(weight.astype(np.float32), bias.astype(np.float32)),
    )


@pytest.fixture(scope="module")
def dump() -> FeatureDump:
    return synthetic_dump()


@pytest.fixture(scope="module")
def mapped_dump() -> FeatureDump:
    return synthetic_dump(seed=1, maps=4)


def auroc(id_scores, ood_scores) -> float:
    labels = np.r_[np.ones(len(id_scores)), np.zeros(len(ood_scores))]
    return float(roc_auc_score(labels, np.r_[id_scores, ood_scores]))


def ncood_auroc(dump: FeatureDump, name: str, **params) -> float:
    scorer, _ = host().scorers().get(name).build({k: str(v) for k, v in params.items()})
    scorer.fit(dump.train, dump.head)
    test, ood = scorer.score(dump.test), scorer.score(dump.ood["fresh"])
    assert test.dtype == np.float64 and np.all(np.isfinite(np.r_[test, ood]))
    return auroc(test, ood)


def tensor(values) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(values))


def peer_auroc(dump: FeatureDump, predict, part: str = "features") -> float:
    """AUROC of ``−predict(x)``, x the split's ``part`` as a tensor."""
    with torch.no_grad():
        test = -predict(tensor(dump.test.part(part))).double().numpy()
        ood = -predict(tensor(dump.ood["fresh"].part(part))).double().numpy()
    return auroc(test, ood)


def linear(dump: FeatureDump) -> torch.nn.Linear:
    layer = torch.nn.Linear(DIM, NUM_CLASSES)
    with torch.no_grad():
        layer.weight.copy_(tensor(dump.head.weight))
        layer.bias.copy_(tensor(dump.head.bias))
    return layer


def train_tensors(dump: FeatureDump, part: str = "features"):
    return tensor(dump.train.part(part)), tensor(dump.train.labels)


def test_the_dump_is_not_trivial(dump):
    """Neither perfectly separable nor random: differences between scorers show in the AUROC."""
    value = ncood_auroc(dump, "energy")
    assert 0.6 < value < 0.97


# --- logits only ---------------------------------------------------------------------------


def test_entropy(dump):
    peer = peers.Entropy(None)
    assert ncood_auroc(dump, "entropy") == pytest.approx(
        peer_auroc(dump, peer.predict_logits, "logits"), abs=TOLERANCE
    )


def test_klm(dump):
    peer = peers.KLMatching(None).fit_logits(*train_tensors(dump, "logits"))
    assert ncood_auroc(dump, "klm") == pytest.approx(
        peer_auroc(dump, peer.predict_logits, "logits"), abs=TOLERANCE
    )


def test_webo_with_weights_from_a_file(dump, tmp_path):
    weights = np.random.default_rng(5).uniform(-0.2, 2.0, NUM_CLASSES)  # one clipped to 0
    path = tmp_path / "weights.npy"
    np.save(path, weights)
    peer = peers.WeightedEBO(None, tensor(weights.astype(np.float32)))
    assert ncood_auroc(dump, "webo", weights=path) == pytest.approx(
        peer_auroc(dump, peer.predict_logits, "logits"), abs=TOLERANCE
    )


def test_tscaling_with_the_peers_temperature(dump):
    peer = peers.TemperatureScaling(None).fit_logits(*train_tensors(dump, "logits"))
    temperature = float(peer.t.detach())
    assert ncood_auroc(dump, "tscaling", T=temperature) == pytest.approx(
        peer_auroc(dump, peer.predict_logits, "logits"), abs=TOLERANCE
    )


def test_tscaling_fits_the_nll_optimum(dump):
    """pytorch-ood's fit stops after 50 L-BFGS steps of lr 0.01; ncood's reaches the optimum
    (scipy's bounded minimiser of the same NLL agrees), and the AUROC with it is the peer's
    at that temperature."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    logits, labels = dump.train.logits.astype(np.float64), dump.train.labels

    def nll(t):
        return -log_softmax(logits / t, axis=1)[np.arange(len(labels)), labels].mean()

    best = minimize_scalar(nll, bounds=(0.05, 20), method="bounded", options={"xatol": 1e-10})
    scorer, _ = host().scorers().get("tscaling").build({})
    scorer.fit(dump.train, dump.head)
    assert scorer.resolved_params["T"] == pytest.approx(best.x, rel=1e-6)
    peer = peers.MaxSoftmax(None, t=best.x)
    assert ncood_auroc(dump, "tscaling") == pytest.approx(
        peer_auroc(dump, peer.predict_logits, "logits"), abs=TOLERANCE
    )
