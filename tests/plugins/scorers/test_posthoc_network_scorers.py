"""The network scorers of issue 27 (nac, mahalanobis-odin, adascale-a/-l, iodin) on a tiny CNN:
each against its pytorch-ood 0.4.0 peer where one implements it, and against the authors'
formula, computed here independently (loops, per-sample gradients), where none does; and each
through ``ncood analyze`` on a small trained run.

pytorch-ood returns outlier scores (higher = OOD); ncood's are negated relative to them.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from cli_helpers import runner, train
from network_builders import CLASSES, pattern_batches, tiny_network
from pytorch_ood import detector as peers

from ncood.cli import app
from ncood.errors import NcoodError
from ncood.host.loading import host
from ncood.host.network import Batches, Network
from ncood.ood.conventions import ood_metrics
from ncood.store.run import RunDir

NAMES = ("nac", "mahalanobis-odin", "adascale-a", "adascale-l", "iodin")


@pytest.fixture(scope="module")
def data() -> dict[str, Batches]:
    return pattern_batches()


def images(split: Batches) -> torch.Tensor:
    return torch.cat([inputs for inputs, _ in split])


def ncood_scores(name: str, network: Network, data, **params) -> tuple[np.ndarray, np.ndarray]:
    scorer, _ = host().scorers().get(name).build({k: str(v) for k, v in params.items()})
    scorer.fit(network, data["train"])
    test, ood = scorer.score(network, data["test"]), scorer.score(network, data["ood"])
    assert test.dtype == np.float64 and np.all(np.isfinite(np.r_[test, ood]))
    return test, ood


def auroc(scores: tuple[np.ndarray, np.ndarray]) -> float:
    return ood_metrics(*scores)["auroc"]


def trainable(network: Network) -> torch.nn.Module:
    """A copy of the module whose weights require gradients (pytorch-ood's gradient detectors
    take the graph from them)."""
    module = copy.deepcopy(network.module)
    for parameter in module.parameters():
        parameter.requires_grad_(True)
    return module


# ---- NAC-UE


def test_nac_geometric_on_the_penultimate_is_pytorch_oods_nacue(data):
    """The peer runs in float64 (the network and its bin edges): in float32 its middle edge is
    0.49999997, so the states of exactly 0.5 (a neuron at 0, common after a ReLU) fall right of
    it, a rounding of the peer's edges rather than its method. Its sum over layers is a mean
    here (one layer)."""
    network = tiny_network()
    params = {"layers": "penultimate", "M": 50, "O": 50, "alpha": 100.0}
    ours = ncood_scores("nac", network, data, bins="geometric", fit_images=0, **params)
    module = trainable(network).double()
    torch.set_default_dtype(torch.float64)
    try:
        peer = peers.NACUE(module, layers=[module.pool], m_bins=50, alpha=100.0, o_star=50)
        peer.fit([(x.double(), y) for x, y in data["train"]])
        theirs = [-peer.predict(images(data[s]).double()).numpy() for s in ("test", "ood")]
    finally:
        torch.set_default_dtype(torch.float32)
    for mine, peer_scores in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(mine, peer_scores, rtol=0, atol=1e-6)
    # its float32 mean over neurons breaks the ties of equal coverage at random: rounded to
    # float32's resolution, the ties are back
    rounded = [np.round(t, 6) for t in theirs]
    assert abs(auroc(ours) - auroc(rounded)) <= 1e-3


def authors_thresholds(m: int) -> np.ndarray:
    """coverage.py's logspace(1e3, M), written out again."""
    half = int(m / 2)
    x = np.linspace(1, np.sqrt(1000), num=half)
    low = np.emath.logn(1000, x)
    high = (1 - low)[::-1]
    edges = np.concatenate([low[:-1], high])
    edges[-1] += 1e-2
    return np.append(edges, 1.2)


def authors_states(module, x: torch.Tensor, layer: str, alpha: float) -> torch.Tensor:
    """sigmoid(α · Σ_hw o · Σ_hw ∂KL/∂o), one image at a time (the batch cannot mix)."""
    rows, kept = [], {}
    if layer == "penultimate":
        handle = module.fc.register_forward_pre_hook(lambda _m, a: kept.__setitem__("o", a[0]))
    else:
        hooked = getattr(module, layer)
        handle = hooked.register_forward_hook(lambda _m, _i, o: kept.__setitem__("o", o))
    for image in x:
        with torch.enable_grad():
            logits = module(image[None].clone().requires_grad_())
            targets = torch.full_like(logits, 1 / logits.shape[1])
            loss = torch.sum(-targets * torch.log_softmax(logits, dim=-1), dim=-1).sum()
            (grad,) = torch.autograd.grad(loss, kept["o"])
        o, g = kept["o"].detach().double(), grad.double()
        if o.ndim == 4:
            o, g = o.sum(dim=(2, 3)), g.sum(dim=(2, 3))
        rows.append(1 / (1 + torch.exp(-alpha * (o * g)[0])))
    handle.remove()
    return torch.stack(rows)


def test_nac_equals_the_authors_estimator(data):
    """Two layers (the penultimate and a map), the authors' edges, KMNC's update and ood_test
    as in their coverage.py (interval hits compared against every threshold), fitted on all
    train images."""
    network = tiny_network()
    layers = {"penultimate": (50, 5, 100.0), "stage2": (20, 3, 10.0)}
    ours = ncood_scores(
        "nac",
        network,
        data,
        layers=",".join(layers),
        M=",".join(str(v[0]) for v in layers.values()),
        O=",".join(str(v[1]) for v in layers.values()),
        alpha=",".join(str(v[2]) for v in layers.values()),
        fit_images=0,
    )
    train_x = images(data["train"])
    expected = {"test": 0.0, "ood": 0.0}
    for name, (m, o, alpha) in layers.items():
        thresh = torch.from_numpy(authors_thresholds(m))[:, None]
        states = authors_states(network.module, train_x, name, alpha)
        hits = (states[:, None, :] >= thresh[: m - 1][None]) & (
            states[:, None, :] < thresh[1:][None]
        )
        coverage = torch.clamp(hits.sum(dim=0).double() / o, max=1.0)  # intervals × neurons
        for split in expected:
            s = authors_states(network.module, images(data[split]), name, alpha)
            b = (s[:, None, :] >= thresh[: m - 1][None]) & (s[:, None, :] < thresh[1:][None])
            expected[split] = expected[split] + (b * coverage[None]).sum(dim=1).mean(dim=1) / 2
    np.testing.assert_allclose(ours[0], expected["test"].numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours[1], expected["ood"].numpy(), rtol=0, atol=1e-12)


def test_nac_subset_is_the_authors_balanced_train_subset():
    from ncood_plugins.scorers.nac import balanced_subset

    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 0, 1])
    chosen = balanced_subset(labels, 7, seed=1)  # int(7 / 3) = 2 of each class
    expected = []
    for c in range(3):
        inds = list(np.flatnonzero(labels == c))
        np.random.RandomState(1).shuffle(inds)
        expected += inds[:2]
    assert sorted(expected) == chosen.tolist()
    assert np.bincount(labels[chosen]).tolist() == [2, 2, 2]
    with pytest.raises(NcoodError, match="at least 3"):
        balanced_subset(labels, 2, seed=1)


def test_nac_default_layers_are_the_authors_for_a_resnet(data):
    """avgpool, layer3, layer2, layer1 on a ResNet; here: the head's input, stage2, stage1, with
    the authors' CIFAR-10 values for the first three."""
    network = tiny_network()
    scorer = host().scorers().get("nac").create(fit_images=30)
    scorer.fit(network, data["train"])
    assert scorer.layers == ["penultimate", "stage2", "stage1"]
    assert scorer.M == [50, 500, 50] and scorer.O == [50, 100, 5]
    assert scorer.alpha == [100.0, 1000.0, 0.001]
    assert scorer.resolved_params["fitted_on"] == 30


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"M": "51"}, "nac.M must be"),
        ({"bins": "linear"}, "nac.bins"),
        ({"O": "0"}, "nac.O"),
        ({"alpha": "-1"}, "nac.alpha"),
        ({"layers": "penultimate,stage1", "M": "50,50,50"}, "3 values for 2 layers"),
        ({"fit_images": "-1"}, "nac.fit_images"),
    ],
)
def test_nac_bad_values_are_one_line(params, message):
    with pytest.raises(NcoodError, match=message):
        host().scorers().get("nac").build(params)


def test_nac_names_an_unknown_layer(data):
    scorer = host().scorers().get("nac").create(layers="stage9")
    with pytest.raises(NcoodError, match="no module 'stage9'"):
        scorer.fit(tiny_network(), data["train"])


# ---- Mahalanobis + ODIN


def encoder(network: Network):
    """The tiny CNN up to the head's input (what pytorch-ood's detectors take)."""
    module = network.module
    return lambda x: module.drop(module.pool(module.maps(x)).flatten(1))


@pytest.mark.parametrize("pixel_units", [False, True])
def test_mahalanobis_odin_matches_pytorch_ood(data, pixel_units):
    """pytorch-ood's covariance is the within-class scatter S (a sum, not a mean) plus 1e-6·I,
    and its outlier score half the distance: with ncood's ridge set to the same (relative to
    the mean variance tr(S/N)/D), its scores are ncood's times 1 / (2N)."""
    network = tiny_network()
    features = encoder(network)(images(data["train"])).double()
    labels = torch.from_numpy(data["train"].labels)
    means = torch.stack([features[labels == c].mean(dim=0) for c in range(CLASSES)])
    scatter = ((features - means[labels]) ** 2).sum()
    count, dim = len(labels), features.shape[1]
    ridge = 1e-6 / count / float(scatter / count / dim)
    params = {"eps": 0.01, "pixel_units": pixel_units, "ridge": ridge}
    ours = ncood_scores("mahalanobis-odin", network, data, **params)
    norm_std = list(network.input_std) if pixel_units else None
    peer = peers.MahalanobisODIN(encoder(network), eps=0.01, norm_std=norm_std)
    peer.fit(list(data["train"]))
    theirs = [peer.predict(images(data[s])).double().numpy() for s in ("test", "ood")]
    assert abs(auroc(ours) - auroc([-t for t in theirs])) <= 1e-3
    for mine, peer_scores in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(-mine / (2 * count), peer_scores, rtol=1e-4)


def test_mahalanobis_odin_without_a_step_is_mahalanobis(data):
    """ε = 0: ``mahalanobis`` on the features the network gives (the same float64 arithmetic)."""
    from ncood.store.features import Head, Split

    network = tiny_network()
    test, ood = ncood_scores("mahalanobis-odin", network, data, eps=0.0)

    def split(name: str) -> Split:
        with torch.no_grad():
            features, logits = network.penultimate(images(data[name]))
        return Split(features.numpy(), logits.numpy(), data[name].labels)

    head = network.module.fc
    plain = host().scorers().get("mahalanobis").create()
    plain.fit(split("train"), Head(head.weight.numpy(), head.bias.numpy()))
    np.testing.assert_allclose(test, plain.score(split("test")), rtol=1e-9)
    np.testing.assert_allclose(ood, plain.score(split("ood")), rtol=1e-9)


def test_mahalanobis_odin_step_lowers_the_nearest_distance(data):
    """The step goes against the gradient of the nearest distance: for a small ε every sample's
    score rises (a first-order move)."""
    network = tiny_network()
    before, _ = ncood_scores("mahalanobis-odin", network, data, eps=0.0)
    after, _ = ncood_scores("mahalanobis-odin", network, data, eps=1e-4)
    assert np.mean(after > before) > 0.9


# ---- AdaSCALE


class AuthorsAdaScale:
    """OpenOOD's AdaScalePostprocessor and AdaScaleANet / AdaScaleLNet, written out again on
    the tiny CNN in float32 (an eCDF by counting, as statsmodels' ECDF)."""

    def __init__(self, network: Network, logit_scaling: bool, k1=25, k2=10, lmbda=10, o=0.05):
        self.net, self.logit_scaling = network.module, logit_scaling
        self.k1, self.k2, self.lmbda, self.o = k1, k2, lmbda, o
        self.low, self.high = 75, 85

    def forward(self, data):
        module = self.net
        feature = module.drop(module.pool(module.maps(data)).flatten(1))
        return module.fc(feature), feature

    def measure(self, data):
        data = data.clone().requires_grad_(True)
        with torch.enable_grad():
            output, feature = self.forward(data)
            labels = output.detach().argmax(dim=1)
            score = output[torch.arange(len(labels)), labels]
            score.backward(torch.ones_like(labels, dtype=score.dtype))
        grad = data.grad.detach()
        batch, channels, height, width = data.shape
        n_pixels = int(channels * height * width * self.o)
        abs_grad = abs(grad).view(batch, -1)
        _, indices = torch.topk(abs_grad, n_pixels, dim=1, largest=False)
        mask = torch.zeros_like(abs_grad, dtype=torch.uint8)
        mask.scatter_(1, indices, 1)
        perturbed = data.detach() + grad.sign() * mask.view(data.shape) * 0.5
        with torch.no_grad():
            _, feature_perturbed = self.forward(perturbed)
        feature = feature.detach()
        shift = abs(feature - feature_perturbed)
        k1 = int(feature.shape[1] * self.k1 / 100)
        k2 = int(feature.shape[1] * self.k2 / 100)
        top1 = torch.topk(feature, dim=1, k=k1)[1]
        top2 = torch.topk(feature, dim=1, k=k2)[1]
        q = torch.gather(torch.relu(feature_perturbed), 1, top1).sum(dim=1)
        return feature, q + self.lmbda * torch.gather(shift, 1, top2).sum(dim=1)

    def fit(self, data):
        self.fitted = self.measure(data)[1].numpy()

    def scores(self, data):
        feature, q = self.measure(data)
        ecdf = np.array([(self.fitted <= v).sum() / len(self.fitted) for v in q.numpy()])
        percentiles = torch.from_numpy(self.low + (1 - ecdf) * (self.high - self.low))
        x = torch.relu(feature)
        n = x.shape[1]
        ks = n - torch.round(n * percentiles / 100.0).to(torch.int)
        values, _ = torch.topk(x, int(ks.max()), dim=1)
        mask = torch.arange(int(ks.max()))[None, :] < ks[:, None]
        scale = x.sum(dim=1, keepdim=True) / (values * mask).sum(dim=1, keepdim=True)
        if self.logit_scaling:
            logits = self.net.fc(feature) * scale**2.0
        else:
            logits = self.net.fc(feature * torch.exp(scale))
        return torch.logsumexp(logits, dim=1).double().numpy()


@pytest.mark.parametrize("variant", ["a", "l"])
def test_adascale_equals_the_authors_postprocessor(data, variant):
    network = tiny_network()
    params = {"k1": 25, "k2": 10, "fit_images": 1000}  # int(16 k / 100) ≥ 1: no clamp at 1
    ours = ncood_scores(f"adascale-{variant}", network, data, **params)
    authors = AuthorsAdaScale(network, logit_scaling=variant == "l")
    authors.fit(images(data["train"]))
    for mine, split in zip(ours, ("test", "ood"), strict=True):
        np.testing.assert_allclose(mine, authors.scores(images(data[split])), rtol=1e-5)


def test_adascale_scale_is_scale_at_the_fitted_percentile(data):
    """Q' above every fitted value gives the lower percentile, below all the upper one: the
    SCALE factor of that percentile (ncood's ``scale`` formula, e^(s) with s = Σ a / Σ top)."""
    from ncood_plugins.scorers.adascale import AdaScale

    features = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0, -1.0, 0.5, 0.25]], dtype=torch.float64)
    # p = 75: k = 8 − round(6) = 2 → top 4 + 3; p = 85: k = 8 − round(6.8) = 1 → top 4
    total = 4 + 3 + 2 + 1 + 0.5 + 0.25
    assert AdaScale.scales(features, np.array([75.0]))[0] == pytest.approx(total / 7)
    assert AdaScale.scales(features, np.array([85.0]))[0] == pytest.approx(total / 4)
    assert AdaScale.scales(torch.zeros(1, 8, dtype=torch.float64), np.array([80.0]))[0] == 1.0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"lower_percentile": "90"}, "lower_percentile"),
        ({"upper_percentile": "100"}, "upper_percentile"),
        ({"k1": "120"}, "adascale-a.k1 is a percent"),
        ({"fit_images": "0"}, "fit_images"),
    ],
)
def test_adascale_bad_values_are_one_line(params, message):
    with pytest.raises(NcoodError, match=message):
        host().scorers().get("adascale-a").build(params)


# ---- I-ODIN


def openood_iodin(network: Network, data: torch.Tensor, noise: float, temperature: float):
    """OpenOOD's IODINPostprocessor.postprocess, written out again (its ODIN's input_std)."""
    net, input_std = network.module, network.input_std
    data = data.clone().requires_grad_(True)
    with torch.enable_grad():
        output = net(data)
        labels = output.detach().argmax(axis=1)
        loss = torch.nn.CrossEntropyLoss()(output / temperature, labels)
        loss.backward()
    grad = data.grad.detach()
    batch, channels, height, width = grad.shape
    abs_grad = abs(grad).view(batch, -1)
    mask = torch.zeros_like(abs_grad, dtype=torch.uint8)
    mask.scatter_(1, torch.argmax(abs_grad, dim=1, keepdim=True), 1)
    mask = mask.view(batch, channels, height, width)
    gradient = (torch.ge(grad, 0).float() - 0.5) * 2
    for c in range(3):
        gradient[:, c] = gradient[:, c] / input_std[c]
    temp_inputs = torch.add(data.detach(), gradient * mask, alpha=-noise)
    with torch.no_grad():
        output = net(temp_inputs) / temperature
    output = output - output.max(dim=1, keepdims=True).values
    probabilities = output.exp() / output.exp().sum(dim=1, keepdims=True)
    return probabilities.max(dim=1).values.double().numpy()


@pytest.mark.parametrize(("eps", "T"), [(0.0014, 1000.0), (0.05, 10.0)])
def test_iodin_equals_openoods_postprocessor(data, eps, T):
    network = tiny_network()
    ours = ncood_scores("iodin", network, data, eps=eps, T=T)
    for mine, split in zip(ours, ("test", "ood"), strict=True):
        expected = openood_iodin(network, images(data[split]), eps, T)
        np.testing.assert_allclose(mine, expected, rtol=1e-6)


def test_iodin_moves_one_input_value_per_image(data):
    network = tiny_network()
    scorer = host().scorers().get("iodin").create(eps=0.1, pixel_units=False)
    x = images(data["test"])
    moved = scorer.perturbed(network, x) - x
    changed = (moved != 0).reshape(len(x), -1).sum(dim=1)
    assert changed.tolist() == [1] * len(x)
    assert torch.allclose(moved.abs().reshape(len(x), -1).max(dim=1).values, torch.tensor(0.1))


# ---- registration, and ncood analyze on a trained run


def test_listed_as_network_scorers():
    listed = runner.invoke(app, ["plugins"])
    assert listed.exit_code == 0, listed.output
    for name in NAMES:
        assert name in listed.output
        contribution = host().scorers().get(name)
        assert contribution.family == "model" and contribution.needs_network


@pytest.mark.parametrize("name", NAMES)
def test_gradients_work_under_no_grad_and_inference_mode(data, name):
    """Each takes its gradients locally: a caller under no_grad or inference mode gets the same
    scores, and no weight is left with a gradient."""
    network = tiny_network()
    plain, _ = ncood_scores(name, network, data)
    with torch.inference_mode():
        inferred, _ = ncood_scores(name, network, data)
    with torch.no_grad():
        quiet, _ = ncood_scores(name, network, data)
    np.testing.assert_array_equal(plain, inferred)
    np.testing.assert_array_equal(plain, quiet)
    assert all(p.grad is None for p in network.module.parameters())


def test_they_run_in_analyze_on_a_trained_run(tmp_path):
    out = tmp_path / "run"
    result = train("--epochs", "1", "--out", str(out))
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["analyze", str(out), "--plugins", ",".join(NAMES), "--quiet"])
    assert result.exit_code == 0, result.output
    run = RunDir.open(out)
    results = json.loads(run.results(run.feature_epochs()[-1]).read_text())
    assert results["errors"] == {}
    for per_scorer in results["ood"].values():
        assert set(per_scorer) == set(NAMES)
        assert all(0.0 <= m["auroc"] <= 1.0 for m in per_scorer.values())
    assert results["params"]["nac"]["layers"] == ["penultimate", "layer3", "layer2", "layer1"]
