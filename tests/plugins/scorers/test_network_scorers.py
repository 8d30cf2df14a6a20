"""The model-based scorers (odin, mcd, gram, rankfeat) on a tiny CNN: each against its
pytorch-ood 0.4.0 peer with the same parameters (AUROC to 1e-3, per-sample scores where both
compute the same thing), and golden cases with known answers.

pytorch-ood returns outlier scores (higher = OOD); ncood's are negated relative to them.
Per-sample tolerances allow for ncood's float64 against pytorch-ood's float32 arithmetic.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from network_builders import CLASSES, STD, TinyCNN, pattern_batches, tiny_network
from pytorch_ood import detector as peers
from torch import nn
from typer.testing import CliRunner

from ncood.cli import app
from ncood.errors import NcoodError
from ncood.host.loading import host
from ncood.host.network import Batches, Network
from ncood.ood.conventions import ood_metrics
from ncood.testing import batches  # 25 images a batch
from ncood_plugins.scorers.mcd import CHUNK, chunk_seed, fixed_chunks

NAMES = ("odin", "mcd", "gram", "rankfeat")
TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def data() -> dict[str, Batches]:
    return pattern_batches()


def images(split: Batches) -> list[torch.Tensor]:
    return [inputs for inputs, _ in split]


def ncood_scores(name: str, network: Network, data, **params) -> tuple[np.ndarray, np.ndarray]:
    scorer, _ = host().scorers().get(name).build({k: str(v) for k, v in params.items()})
    scorer.fit(network, data["train"])
    test, ood = scorer.score(network, data["test"]), scorer.score(network, data["ood"])
    assert test.dtype == np.float64 and np.all(np.isfinite(np.r_[test, ood]))
    return test, ood


def peer_scores(predict, data, before=lambda: None) -> tuple[np.ndarray, np.ndarray]:
    """The peer's outlier scores, negated, batch by batch as ncood sees them."""
    out = []
    for split in (data["test"], data["ood"]):
        before()
        out.append(-torch.cat([predict(x).detach() for x in images(split)]).double().numpy())
    return out[0], out[1]


def auroc(scores: tuple[np.ndarray, np.ndarray]) -> float:
    return ood_metrics(*scores)["auroc"]


def check_peer(ours, theirs, rtol: float, atol: float = 0.0) -> None:
    assert abs(auroc(ours) - auroc(theirs)) <= TOLERANCE
    for mine, peer in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(mine, peer, rtol=rtol, atol=atol)


def max_softmax(network: Network, split: Batches, T: float = 1.0) -> np.ndarray:
    with torch.no_grad():
        logits = torch.cat([network.logits(x) for x in images(split)]).double()
    return torch.softmax(logits / T, dim=1).max(dim=1).values.numpy()


# ---- ODIN


@pytest.mark.parametrize("pixel_units", [False, True])
def test_odin_matches_pytorch_ood(data, pixel_units):
    network = tiny_network()
    params = {"eps": 0.01, "T": 10.0}
    ours = ncood_scores("odin", network, data, pixel_units=pixel_units, **params)
    norm_std = list(STD) if pixel_units else None
    peer = peers.ODIN(network.module, eps=0.01, temperature=10.0, norm_std=norm_std)
    check_peer(ours, peer_scores(peer.predict, data), rtol=1e-5)


def test_odin_with_no_step_is_the_tempered_msp(data):
    network = tiny_network()
    test, _ = ncood_scores("odin", network, data, eps=0.0, T=1000.0)
    np.testing.assert_allclose(test, max_softmax(network, data["test"], 1000.0), rtol=1e-12)


def test_odin_under_no_grad_and_inference_mode(data):
    network = tiny_network()
    plain, _ = ncood_scores("odin", network, data)
    with torch.no_grad():
        quiet, _ = ncood_scores("odin", network, data)
    with torch.inference_mode():
        inferred, _ = ncood_scores("odin", network, data)
    np.testing.assert_array_equal(plain, quiet)
    np.testing.assert_array_equal(plain, inferred)
    assert all(p.grad is None for p in network.module.parameters())


# ---- MC dropout


@pytest.mark.parametrize("mode", ["mean", "var"])
def test_mcd_matches_pytorch_ood(data, mode):
    network = tiny_network(dropout=True)
    ours = ncood_scores("mcd", network, data, samples=8, mode=mode, seed=5)
    peer = peers.MCD(network.module, samples=8, mode=mode)
    theirs = peer_by_chunk(peer.predict, data, seed=5)
    if mode == "var":  # pytorch-ood's score is the variance itself, an outlier score
        check_peer(ours, theirs, rtol=1e-5, atol=1e-9)
    else:
        check_peer(ours, theirs, rtol=1e-5)


def chunks(split: Batches):
    """mcd's draws: the split in chunks of CHUNK images, the RNG reseeded at each."""
    return enumerate(fixed_chunks(split, CHUNK))


def peer_by_chunk(predict, data, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The peer's outlier scores, negated, on mcd's chunks with mcd's seeds."""
    out = []
    for name in ("test", "ood"):
        per_chunk = []
        for index, inputs in chunks(data[name]):
            torch.manual_seed(chunk_seed(seed, index))
            per_chunk.append(predict(inputs).detach())
        out.append(-torch.cat(per_chunk).double().numpy())
    return out[0], out[1]


def test_mcd_without_dropout_and_p_zero_is_msp(data):
    network = tiny_network()
    test, ood = ncood_scores("mcd", network, data, p=0.0, samples=5)
    # mcd runs the network on its chunks, not on these batches: float32 rounding apart
    np.testing.assert_allclose(test, max_softmax(network, data["test"]), rtol=1e-6)
    np.testing.assert_allclose(ood, max_softmax(network, data["ood"]), rtol=1e-6)


def test_mcd_without_dropout_drops_the_head_input(data):
    network = tiny_network()
    test, _ = ncood_scores("mcd", network, data, p=0.5, samples=5)
    assert not np.allclose(test, max_softmax(network, data["test"]))
    again, _ = ncood_scores("mcd", network, data, p=0.5, samples=5)
    np.testing.assert_array_equal(test, again)  # the seed fixes the draws
    assert not network.module.fc._forward_pre_hooks  # the hook is gone


def test_mcd_head_only_sampling_equals_whole_forwards(data):
    """Without dropout modules the network runs once per chunk and the head N times: the same
    masks in the same order as N whole forwards with the head-input hook (bit for bit)."""
    network = tiny_network()
    fast, _ = ncood_scores("mcd", network, data, p=0.3, samples=4, seed=2, mode="var")
    slow = []
    hook = network.module.fc.register_forward_pre_hook(
        lambda _m, args: (F.dropout(args[0], 0.3, training=True), *args[1:])
    )
    with torch.random.fork_rng(), torch.no_grad():
        for index, inputs in chunks(data["test"]):
            torch.manual_seed(chunk_seed(2, index))
            probs = [network.logits(inputs).double().softmax(1) for _ in range(4)]
            slow.append(-torch.stack(probs).var(dim=0, correction=1).mean(dim=1))
    hook.remove()
    np.testing.assert_array_equal(fast, torch.cat(slow).numpy())


@pytest.mark.parametrize("dropout", [False, True])
def test_mcd_leaves_rng_and_modes_as_they_were(data, dropout):
    network = tiny_network(dropout=dropout)
    network.module.stage2.train()  # a mixed state, restored as it was
    modes = [m.training for m in network.module.modules()]
    torch.manual_seed(11)
    state = torch.random.get_rng_state()
    ncood_scores("mcd", network, data, samples=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert [m.training for m in network.module.modules()] == modes


def test_mcd_restores_modes_on_error(data):
    network = tiny_network(dropout=True)
    scorer = host().scorers().get("mcd").create(samples=2)

    def broken():
        yield torch.zeros(2, 5), torch.zeros(2, dtype=torch.int64)  # wrong input shape

    with pytest.raises(RuntimeError):
        scorer.score(network, Batches("test", 2, np.zeros(2, dtype=np.int64), broken))
    assert not any(m.training for m in network.module.modules())


# ---- Gram


def test_gram_matches_pytorch_ood(data):
    network = tiny_network()
    model = network.module
    assert network.stages == ["stage1", "stage2", "stage3"]
    ours = ncood_scores("gram", network, data, seed=4)
    peer = peers.Gram(
        nn.Sequential(model.pool, nn.Flatten(), model.drop, model.fc),
        [model.stage1, model.stage2, model.stage3],
        num_classes=CLASSES,
    )
    torch.manual_seed(4)
    peer.fit(list(data["train"]))
    check_peer(ours, peer_scores(peer.predict, data), rtol=1e-5)


def slow_gram(maps: torch.Tensor, pole: int) -> torch.Tensor:
    rows = []
    for sample in maps.double():
        f = sample.reshape(sample.shape[0], -1) ** pole
        g = torch.stack([sum(f[i] @ f[j] for j in range(len(f))) for i in range(len(f))])
        rows.append(g.sign() * g.abs() ** (1 / pole))
    return torch.stack(rows)


def test_gram_against_a_slow_loop(data):
    from ncood_plugins.scorers.gram import deviation, gram_vectors

    generator = torch.Generator().manual_seed(1)
    maps = torch.randn(4, 3, 2, 2, generator=generator)
    for pole in (1, 2, 3):
        torch.testing.assert_close(gram_vectors(maps, pole), slow_gram(maps, pole))
    network = tiny_network()
    scorer = host().scorers().get("gram").create(layers="stage3", poles=2, seed=0)
    scorer.fit(network, data["train"])
    inputs = images(data["ood"])[0][:5]
    with torch.no_grad():
        predicted = network.logits(inputs).argmax(dim=1)
        maps = network.module.maps(inputs)
    expected = []
    for n, c in enumerate(predicted.tolist()):
        total = 0.0
        for pole in (1, 2):
            g = slow_gram(maps[n : n + 1], pole)[0]
            low, high = scorer.low[0][pole - 1][c], scorer.high[0][pole - 1][c]
            total += float(deviation(g[None], low, high))
        expected.append(-total / scorer.norms[0])
    subset = batches("ood/few", inputs, torch.full((5,), -1))
    np.testing.assert_allclose(scorer.score(network, subset), expected, rtol=1e-9)


def test_gram_bounds_cover_their_own_fitting_part(data):
    network = tiny_network()
    scorer = host().scorers().get("gram").create(validation_fraction=0.0)
    scorer.fit(network, data["train"])
    assert scorer.norms == [1.0, 1.0, 1.0]  # no validation part
    scores = scorer.score(network, data["train"])
    with torch.no_grad():
        predicted = torch.cat([network.logits(x) for x in images(data["train"])]).argmax(dim=1)
    right = predicted.numpy() == data["train"].labels
    assert right.any() and np.all(scores[right] == 0.0)  # inside its own class's bounds


# ---- RankFeat


def test_rankfeat_matches_pytorch_ood(data):
    network = tiny_network()
    model = network.module
    ours = ncood_scores("rankfeat", network, data)
    peer = peers.RankFeat(backbone=model.maps, head=model.head)
    check_peer(ours, peer_scores(peer.predict, data), rtol=1e-5, atol=1e-6)


def test_rankfeat_power_iterations_approach_the_svd(data):
    network = tiny_network()
    exact, _ = ncood_scores("rankfeat", network, data)
    fast, _ = ncood_scores("rankfeat", network, data, power_iterations=200)
    np.testing.assert_allclose(fast, exact, rtol=1e-4)


class RankOne(nn.Module):
    """C channels that are one map times fixed weights: each sample's C × HW matrix is rank 1."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.linspace(0.5, 2.0, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights.view(1, -1, 1, 1)


def test_rankfeat_on_a_rank_one_map_is_the_energy_of_the_bias(data):
    module = TinyCNN()
    module.stage3 = nn.Sequential(nn.Conv2d(12, 1, 3, 2, 1), nn.ReLU(), RankOne(16))
    network = tiny_network(module=module)
    test, ood = ncood_scores("rankfeat", network, data, T=2.0)
    bias = module.fc.bias.double()
    energy = float(2.0 * torch.logsumexp(bias / 2.0, dim=0))
    np.testing.assert_allclose(np.r_[test, ood], energy, rtol=1e-6)


def test_rankfeat_refuses_maps_of_one_position(data):
    """A 224-pixel ImageNet network fed 32-pixel images ends in 1 × 1 maps: each C × 1 matrix is
    its own rank-1 part, so every score would be the same; it fails with the reason instead."""
    module = TinyCNN()
    module.stage3 = nn.Sequential(nn.Conv2d(12, 16, 3, 2, 1), nn.AdaptiveAvgPool2d(1))
    with pytest.raises(NcoodError, match=r"16 × 1 × 1, rank 1 already"):
        ncood_scores("rankfeat", tiny_network(module=module), data)


# ---- registration and parameters


def test_listed_as_network_scorers():
    listed = CliRunner().invoke(app, ["plugins"])
    assert listed.exit_code == 0, listed.output
    registry = host().scorers()
    for name in NAMES:
        assert name in listed.output
        assert registry.get(name).family == "model" and registry.get(name).needs_network


@pytest.mark.parametrize(
    ("name", "key", "value"),
    [
        ("odin", "eps", "-1"),
        ("odin", "T", "0"),
        ("mcd", "mode", "median"),
        ("mcd", "p", "1"),
        ("mcd", "samples", "0"),
        ("gram", "poles", "-1"),
        ("gram", "validation_fraction", "1"),
        ("rankfeat", "T", "-2"),
        ("rankfeat", "power_iterations", "-1"),
    ],
)
def test_bad_values_say_which(name, key, value):
    with pytest.raises(NcoodError, match=f"{name}.{key}"):
        host().scorers().get(name).build({key: value})
