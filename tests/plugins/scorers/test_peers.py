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

from ncood.host.loading import host
from ncood.store.features import FeatureDump, Head, Split

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


def test_entropy_where_float32_ties_holds_the_float64_definition(dump):
    """Confident logits: pytorch-ood's float32 entropy (p clipped at 1e-7) ties samples and
    loses the tiny probabilities that rank confident samples; ncood's is Σ p log p to
    float64 precision, sample by sample."""
    logits = dump.test.logits * np.float32(12)
    float32 = -peers.Entropy.score(tensor(logits)).numpy()
    assert len(np.unique(float32)) < len(float32)  # ties
    scorer, _ = host().scorers().get("entropy").build({})
    got = scorer.score(Split(dump.test.features, logits, dump.test.labels))
    assert len(np.unique(got)) == len(got)
    # against 400-digit arithmetic (mpmath) on a few rows, confident ones included
    import mpmath

    mpmath.mp.dps = 400  # the tiny terms sit 1e-120 below the largest
    for row in range(12):
        z = [mpmath.mpf(float(v)) for v in logits[row]]
        total = mpmath.fsum(mpmath.exp(v) for v in z)
        exact = mpmath.fsum(mpmath.exp(v) / total * (v - mpmath.log(total)) for v in z)
        assert got[row] == pytest.approx(float(exact), rel=1e-12, abs=1e-300)


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


# --- activation shaping --------------------------------------------------------------------


def as_maps(values: torch.Tensor, spatial: int = 1) -> torch.Tensor:
    """N×(D·S) channel-major rows as N×D×S×1 maps (S = 1: pytorch-ood's N×D×1×1)."""
    return values.reshape(len(values), DIM, spatial, 1)


def pooled_head(dump: FeatureDump):
    layer = linear(dump)
    return lambda maps: layer(maps.mean(dim=(2, 3)))


def test_dice(dump):
    peer = peers.DICE(None, tensor(dump.head.weight), tensor(dump.head.bias), p=0.7)
    peer.fit_features(*train_tensors(dump))
    assert ncood_auroc(dump, "dice", p=70) == pytest.approx(
        peer_auroc(dump, peer.predict_features), abs=TOLERANCE
    )


@pytest.mark.parametrize("variant", ["ash-p", "ash-b", "ash-s"])
def test_ash_on_the_pooled_features(dump, variant):
    peer = peers.ASH(None, pooled_head(dump), variant=variant, percentile=0.65)
    assert ncood_auroc(dump, variant, percentile=65) == pytest.approx(
        peer_auroc(dump, lambda x: peer.predict_feature_maps(as_maps(x))), abs=TOLERANCE
    )


@pytest.mark.parametrize("variant", ["ash-p", "ash-b", "ash-s"])
def test_ash_on_the_maps(mapped_dump, variant):
    peer = peers.ASH(None, pooled_head(mapped_dump), variant=variant, percentile=0.8)
    expected = peer_auroc(
        mapped_dump, lambda x: peer.predict_feature_maps(as_maps(x, 4)), "layers/maps"
    )
    assert ncood_auroc(mapped_dump, variant, percentile=80, maps="maps") == pytest.approx(
        expected, abs=TOLERANCE
    )
    # on the maps, not on their pooled mean: the two AUROCs differ
    assert abs(ncood_auroc(mapped_dump, variant, percentile=80) - expected) > TOLERANCE


def test_scale_on_the_pooled_features_and_on_the_maps(dump, mapped_dump):
    peer = peers.SCALE(None, pooled_head(dump), percentile=0.85)
    assert ncood_auroc(dump, "scale") == pytest.approx(
        peer_auroc(dump, lambda x: peer.predict_feature_maps(as_maps(x))), abs=TOLERANCE
    )
    peer = peers.SCALE(None, pooled_head(mapped_dump), percentile=0.6)
    expected = peer_auroc(
        mapped_dump, lambda x: peer.predict_feature_maps(as_maps(x, 4)), "layers/maps"
    )
    assert ncood_auroc(mapped_dump, "scale", percentile=60, maps="maps") == pytest.approx(
        expected, abs=TOLERANCE
    )


def test_vra(dump, mapped_dump):
    peer = peers.VRA(None, pooled_head(dump), lower_percentile=0.1, upper_percentile=0.9)
    z, y = train_tensors(dump)
    peer.fit_feature_maps(as_maps(z), y)
    assert ncood_auroc(dump, "vra") == pytest.approx(
        peer_auroc(dump, lambda x: peer.predict_feature_maps(as_maps(x))), abs=TOLERANCE
    )
    peer = peers.VRA(None, pooled_head(mapped_dump), lower_percentile=0.2, upper_percentile=0.95)
    z, y = train_tensors(mapped_dump, "layers/maps")
    peer.fit_feature_maps(as_maps(z, 4), y)
    expected = peer_auroc(
        mapped_dump, lambda x: peer.predict_feature_maps(as_maps(x, 4)), "layers/maps"
    )
    got = ncood_auroc(mapped_dump, "vra", lower_percentile=20, upper_percentile=95, maps="maps")
    assert got == pytest.approx(expected, abs=TOLERANCE)


@pytest.mark.parametrize("path", ["partition", "radix"])
def test_vra_thresholds_are_numpys_percentiles(dump, path, monkeypatch):
    import ncood_plugins.scorers.shaping as shaping

    if path == "radix":
        monkeypatch.setattr(shaping, "COLUMN_BLOCK_BYTES", 1)
    scorer, _ = host().scorers().get("vra").build({"lower_percentile": "3", "maps": ""})
    scorer.fit(dump.train, dump.head)
    features = dump.train.features.astype(np.float64)
    np.testing.assert_allclose(scorer.lower, np.percentile(features, 3, axis=0), rtol=1e-12)
    np.testing.assert_allclose(scorer.upper, np.percentile(features, 90, axis=0), rtol=1e-12)


# --- gradients -----------------------------------------------------------------------------


@pytest.mark.parametrize(("temperature", "bias"), [(1.0, False), (2.5, True)])
def test_gradnorm_equals_autograd_per_sample(dump, temperature, bias):
    """The closed form against torch autograd, sample by sample, in float64."""
    layer = linear(dump).double()
    selected = [layer.weight, layer.bias] if bias else [layer.weight]
    features = tensor(dump.test.features[:50]).double()
    expected = []
    for row in features:
        loss = -(layer(row[None]) / temperature).log_softmax(dim=1).mean()
        grads = torch.autograd.grad(loss, selected)
        expected.append(float(sum(g.abs().sum() for g in grads)))
    scorer, _ = host().scorers().get("gradnorm").build({"T": str(temperature), "bias": str(bias)})
    scorer.fit(dump.train, dump.head)
    logits = features.numpy() @ dump.head.weight.T.astype(np.float64) + dump.head.bias
    split = Split(dump.test.features[:50], logits.astype(np.float32), dump.test.labels[:50])
    np.testing.assert_allclose(scorer.score(split), expected, rtol=1e-5)


def test_gradnorm(dump):
    peer = peers.GradNorm(linear(dump), param_filter=lambda name: name == "weight")
    assert ncood_auroc(dump, "gradnorm") == pytest.approx(
        peer_auroc(dump, peer.predict), abs=TOLERANCE
    )


# --- densities -----------------------------------------------------------------------------


def test_nnguide(dump):
    layer = linear(dump)
    peer = peers.NNGuide(None, layer, k=10).fit_features(*train_tensors(dump))
    assert ncood_auroc(dump, "nnguide", k=10) == pytest.approx(
        peer_auroc(dump, peer.predict_features), abs=TOLERANCE
    )


def test_gmm(dump):
    peer = peers.GMM(None).fit_features(*train_tensors(dump))
    assert ncood_auroc(dump, "gmm") == pytest.approx(
        peer_auroc(dump, peer.predict_features), abs=TOLERANCE
    )


@pytest.mark.parametrize(("tailsize", "alpha", "euclid_weight"), [(25, 10, 1.0), (40, 3, 0.5)])
def test_openmax(dump, tailsize, alpha, euclid_weight):
    peer = peers.OpenMax(None, tailsize=tailsize, alpha=alpha, euclid_weight=euclid_weight)
    peer.fit_logits(*train_tensors(dump, "logits"))
    # pytorch-ood measures the distances only to the classes that some sample of the batch
    # predicts (the others stay 0): each batch gets one row predicted as each class, whose
    # scores are then dropped, so that every distance is measured.
    padding = 100 * torch.eye(NUM_CLASSES)

    def predict(logits):
        return peer.predict_logits(torch.cat([logits, padding]))[: len(logits)]

    got = ncood_auroc(dump, "openmax", tailsize=tailsize, alpha=alpha, euclid_weight=euclid_weight)
    assert got == pytest.approx(peer_auroc(dump, predict, "logits"), abs=TOLERANCE)


# --- issue 27: logit scaling, pNML --------------------------------------------------------


@pytest.mark.parametrize(("percentile", "p"), [(95.0, 0.05), (65.0, 0.35)])
def test_lts(dump, percentile, p):
    """ncood's percentile is 100 · (1 − p), pytorch-ood's fraction of the top activations."""
    peer = peers.LTS(None, head=linear(dump), p=p)
    assert ncood_auroc(dump, "lts", percentile=percentile) == pytest.approx(
        peer_auroc(dump, peer.predict_features), abs=TOLERANCE
    )
    assert_same_scores(dump, "lts", peer.predict_features, percentile=percentile)


def assert_same_scores(dump: FeatureDump, name: str, predict, **params) -> None:
    """Sample by sample: ncood's score is minus the peer's float32 outlier score."""
    scorer = host().scorers().get(name).create(**params)
    scorer.fit(dump.train, dump.head)
    with torch.no_grad():
        peer = -predict(tensor(dump.test.features)).double().numpy()
    np.testing.assert_allclose(scorer.score(dump.test), peer, rtol=1e-4, atol=1e-6)


def test_pnml(dump):
    peer = peers.PNML(None, head=linear(dump)).fit_features(*train_tensors(dump))
    assert ncood_auroc(dump, "pnml") == pytest.approx(
        peer_auroc(dump, peer.predict_features), abs=TOLERANCE
    )
    assert_same_scores(dump, "pnml", peer.predict_features)


def test_graduncertainty_on_the_head_is_the_float64_gradient(dump):
    """The closed form ‖C p − 1‖² (‖f‖² + 1) is the squared norm of the head's gradient of
    −Σ_c log p_c (the BCE to an all-ones label), by float64 autograd sample by sample."""
    layer = linear(dump).double()
    expected = []
    for row in tensor(dump.test.features[:40]).double():
        loss = -torch.log_softmax(layer(row[None]), dim=1).sum()
        grads = torch.autograd.grad(loss, [layer.weight, layer.bias])
        expected.append(float(sum((g**2).sum() for g in grads)))
    scorer = host().scorers().get("graduncertainty").create()
    scorer.fit(dump.train, dump.head)
    np.testing.assert_allclose(scorer.score(dump.test)[:40], expected, rtol=1e-5)


def test_graduncertainty_against_the_peer_where_float32_holds(dump):
    """pytorch-ood's GradUncertainty with the head as the model (W and b; W alone). Its BCE
    runs on the float32 softmax, whose backward divides by max(p (1 − p), 1e-12): a class
    whose p rounds to 1 adds no gradient, so on confident samples it drifts from the formula
    (AUROC 0.49 against 0.54 on this dump). With the logits / 3 no p comes near 0 or 1."""

    def calmed(split: Split) -> Split:
        return Split(split.features, split.logits / 3, split.labels)

    calm = FeatureDump(
        calmed(dump.train),
        calmed(dump.test),
        {"fresh": calmed(dump.ood["fresh"])},
        Head(dump.head.weight / 3, dump.head.bias / 3),
    )
    peer = peers.GradUncertainty(linear(calm))
    assert ncood_auroc(calm, "graduncertainty") == pytest.approx(
        peer_auroc(calm, peer.predict), abs=TOLERANCE
    )
    assert_same_scores(calm, "graduncertainty", peer.predict)
    weight_only = peers.GradUncertainty(linear(calm), param_filter=lambda name: name == "weight")
    assert_same_scores(calm, "graduncertainty", weight_only.predict, bias=False)


# --- coverage ------------------------------------------------------------------------------

PEERED = {
    "entropy", "klm", "tscaling", "webo", "dice", "ash-p", "ash-b", "ash-s", "scale", "vra",
    "gradnorm", "nnguide", "gmm", "openmax", "lts", "pnml", "graduncertainty",
}  # fmt: skip
NEW_MODULES = (
    *("softmax_shapes", "shaping", "gradnorm", "density"),
    *("logit_scaling", "pnml", "grad_uncertainty"),
)


def test_every_scorer_of_the_new_modules_has_a_peer_test_and_a_docs_row():
    from pathlib import Path

    registered = {
        name
        for name, item in host().scorers().items()
        if item.plugin.removeprefix("scorers.") in NEW_MODULES
    }
    assert registered == PEERED
    docs = (Path(__file__).resolve().parents[3] / "docs" / "scorers.md").read_text("utf-8")
    for name in host().scorers().names():
        assert f"| `{name}` |" in docs, name


def test_a_missing_or_misshapen_maps_stage_is_one_line(dump, mapped_dump):
    from ncood.errors import NcoodError

    scorer, _ = host().scorers().get("ash-s").build({"maps": "layer9"})
    with pytest.raises(NcoodError, match="no stage 'layer9'.*stages: none"):
        scorer.fit(dump.train, dump.head)
    wide = Split(
        dump.train.features,
        dump.train.logits,
        dump.train.labels,
        {"odd": np.ones((900, 25), np.float32)},
    )
    scorer, _ = host().scorers().get("scale").build({"maps": "odd"})
    with pytest.raises(NcoodError, match="25 values per sample, not a multiple of .* D = 24"):
        scorer.fit(wide, dump.head)
    scorer, _ = host().scorers().get("ash-p").build({"percentile": "100"})
    with pytest.raises(NcoodError, match="keeps none of the 24"):
        scorer.fit(dump.train, dump.head)


def test_openmax_weibull_fit_is_scipys_maximum_likelihood():
    from scipy.stats import exponweib

    from ncood_plugins.scorers.density import weibull_fit

    rng = np.random.default_rng(1)
    for sample in (rng.gamma(3.0, 2.0, 25) + 9990.0, rng.weibull(1.5, 30) * 3):
        _, shape, _, scale = exponweib.fit(sample, floc=0, f0=1)
        fitted_shape, log_scale = weibull_fit(sample, 0)
        assert fitted_shape == pytest.approx(shape, rel=1e-4)
        assert np.exp(log_scale) == pytest.approx(scale, rel=1e-5)


def test_tiny_train_splits_still_score(dump, capsys):
    """A class with two train samples (their distances to its mean are equal: OpenMax's
    Weibull becomes a step) and fewer train samples than nnguide's k (all of them are used)."""
    keep = np.r_[
        np.flatnonzero(dump.train.labels != 0)[:60], np.flatnonzero(dump.train.labels == 0)[:2]
    ]
    tiny = Split(dump.train.features[keep], dump.train.logits[keep], dump.train.labels[keep])
    for name in ("openmax", "nnguide"):
        scorer, _ = host().scorers().get(name).build({})
        scorer.fit(tiny, dump.head)
        assert np.all(np.isfinite(scorer.score(dump.test)))
    assert scorer.resolved_params["k"] == 62
    assert "nnguide: k = 100 exceeds the 62 ID train samples" in capsys.readouterr().err
