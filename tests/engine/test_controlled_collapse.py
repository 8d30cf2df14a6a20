"""Training that controls collapse (issue 27 §1): the fixed simplex-ETF head, LogitNorm, the
entropy regularizer and the ETF projector, each against its definition."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from cli_helpers import one_line_error, runner
from safetensors.numpy import load_file

from ncood.api import create_analysis
from ncood.cli import app
from ncood.engine.etf import simplex_etf
from ncood.engine.losses import logitnorm_loss, nearest_neighbour_entropy, objective_of
from ncood.engine.presets import resolve_preset
from ncood.engine.resnet import ResNet18
from ncood.engine.session import make_optimizer
from ncood.store.features import load_features

# demo-standard as the issue names it, cut to 2 epochs on 160 images (a checkpoint each).
ETF_RUN = [
    "train", "--preset", "demo-standard", "--head", "etf", "--epochs", "2",
    "--checkpoint-every", "1", "--train-subset", "160", "--quiet",
]  # fmt: skip


def etf_gram(c: int) -> np.ndarray:
    """The Gram matrix of C unit vectors at cosine −1/(C−1)."""
    return np.full((c, c), -1.0 / (c - 1)) + np.eye(c) * (1.0 + 1.0 / (c - 1))


@pytest.mark.parametrize(("classes", "dim"), [(10, 64), (10, 9), (2, 1), (100, 512)])
def test_simplex_etf_is_the_frame_up_to_c_equal_d_plus_one(classes, dim):
    frame = simplex_etf(classes, dim, seed=3).numpy()
    assert frame.shape == (classes, dim)
    np.testing.assert_allclose(frame @ frame.T, etf_gram(classes), atol=1e-12)
    np.testing.assert_array_equal(frame, simplex_etf(classes, dim, seed=3).numpy())


def test_etf_run_keeps_its_head_the_frame_at_every_checkpoint(tmp_path):
    out = tmp_path / "etf"
    result = runner.invoke(app, [*ETF_RUN, "--out", str(out)])
    assert result.exit_code == 0, result.output
    checkpoints = sorted((out / "checkpoints").glob("*.safetensors"))
    assert len(checkpoints) == 2
    first = None
    for path in checkpoints:
        weights = load_file(str(path))
        head = weights["fc.weight"].astype(np.float64)
        assert head.shape == (10, 64)
        np.testing.assert_allclose(head @ head.T, etf_gram(10), atol=1e-6)
        np.testing.assert_array_equal(weights["fc.bias"], 0.0)
        first = head if first is None else first
        np.testing.assert_array_equal(head, first)  # never trained
    # the backbone did train: the two checkpoints differ elsewhere
    a, b = (load_file(str(p)) for p in checkpoints)
    assert not np.array_equal(a["conv1.weight"], b["conv1.weight"])

    # NC2 of the classifier is the frame's (0), NC3 is computed from the features as usual
    dump = load_features(out / "features" / "epoch-0002.safetensors")
    np.testing.assert_array_equal(dump.head.weight, first.astype(np.float32))
    results = create_analysis("nc").run(dump)
    for key in ("nc2_equinorm_weights", "nc2_equiangular_weights", "nc2_maxangle_weights"):
        assert abs(results[key]) < 1e-6, (key, results[key])
    features = np.asarray(dump.train.features, np.float64)
    labels = np.asarray(dump.train.labels)
    means = np.stack([features[labels == c].mean(0) for c in range(10)])
    centred = means - means.mean(0)
    weight = np.asarray(dump.head.weight, np.float64)
    nc3 = np.sum((weight / np.linalg.norm(weight) - centred / np.linalg.norm(centred)) ** 2)
    assert results["nc3"] == pytest.approx(nc3, rel=1e-6)
    assert 0 < results["nc3"] < 4  # a real distance (its range is [0, 4]), not a placeholder
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["head"] == "etf"


def test_more_classes_than_an_etf_fits_is_one_line(tmp_path):
    out = tmp_path / "refused"
    result = runner.invoke(
        app, ["train", "--preset", "demo-standard", "--head", "etf", "--width", "1",
              "--epochs", "1", "--quiet", "--out", str(out)],
    )  # fmt: skip
    one_line_error(result, "C ≤ D + 1", "10 classes", "8 feature dimensions")
    assert not out.exists()


def test_logitnorm_equals_the_papers_formula_on_a_hand_computed_batch():
    logits = torch.tensor([[3.0, 4.0, 0.0], [1.0, -2.0, 2.0]], dtype=torch.float64)
    labels = torch.tensor([1, 0])
    tau = 0.5
    # by hand: ‖(3,4,0)‖ = 5, ‖(1,−2,2)‖ = 3; f/(τ‖f‖) = (1.2, 1.6, 0) and (2/3, −4/3, 4/3)
    first = -1.6 + math.log(math.exp(1.2) + math.exp(1.6) + 1.0)
    second = -2 / 3 + math.log(math.exp(2 / 3) + math.exp(-4 / 3) + math.exp(4 / 3))
    # the 1e-7 the paper adds to the norm moves these numbers by about 1e-7
    got = logitnorm_loss(logits, labels, tau)
    assert float(got) == pytest.approx(first + second, abs=1e-6)
    scaled = logitnorm_loss(logits * 1000.0, labels, tau)  # scale-free: the point of the loss
    assert float(scaled) == pytest.approx(float(got), abs=1e-7)


def test_a_logitnorm_run_trains_on_that_formula():
    config = resolve_preset("demo-standard", loss="logitnorm", logitnorm_tau=0.04)
    objective = objective_of(config)
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(8, 10)) * 5
    labels = rng.integers(0, 10, 8)
    summed, _ = objective.summed(torch.tensor(logits), torch.tensor(labels))
    scaled = logits / (0.04 * (np.linalg.norm(logits, axis=1, keepdims=True) + 1e-7))
    shifted = scaled - scaled.max(1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    reference = -log_softmax[np.arange(8), labels].sum()
    assert float(summed) == pytest.approx(reference, rel=1e-6)  # the step computes in fp32
    ce, _ = objective_of(resolve_preset("demo-standard")).summed(
        torch.tensor(logits), torch.tensor(labels)
    )
    assert float(ce) != pytest.approx(reference, rel=1e-3)  # the option changes the loss


def test_entropy_regularizer_is_minus_the_log_nearest_neighbour_distance():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(6, 4))
    z = features / np.linalg.norm(features, axis=1, keepdims=True)
    reference = 0.0
    for i in range(6):  # brute force: the nearest other point
        distances = [np.linalg.norm(z[i] - z[j]) for j in range(6) if j != i]
        reference -= math.log(min(distances))
    got = float(nearest_neighbour_entropy(torch.tensor(features)))
    assert got == pytest.approx(reference, abs=1e-6)  # the 1e-8 guards shift it by ~1e-7
    assert float(nearest_neighbour_entropy(torch.tensor(features[:1]))) == 0.0


def test_entropy_reg_and_projector_options_reach_the_step():
    config = resolve_preset("demo-standard", entropy_reg=0.05, etf_projector=32)
    assert objective_of(config).uses_encoder
    model = ResNet18(10, width=4, head="etf", projector_hidden=32)
    optimizer = make_optimizer(config, model, torch.device("cpu"))
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    frozen = [model.fc.weight, model.fc.bias, model.projector[0].weight, model.projector[2].weight]
    assert all(id(p) not in trained for p in frozen)
    assert all(not p.requires_grad for p in frozen)
    logits, encoded = model(torch.randn(5, 3, 32, 32), with_encoded=True)
    assert logits.shape == (5, 10) and encoded.shape == (5, 32)
    features = model.forward_features(torch.randn(3, 3, 32, 32))[0]
    np.testing.assert_allclose(features.norm(dim=1).detach().numpy(), 1.0, atol=1e-5)


def test_an_etf_head_after_the_etf_projector_is_refused_in_one_line(tmp_path):
    result = runner.invoke(
        app, ["train", "--preset", "demo-standard", "--head", "etf", "--etf-projector", "64",
              "--quiet", "--out", str(tmp_path / "never")],
    )  # fmt: skip
    one_line_error(result, "--head etf with --etf-projector", "[-1, 1]")
    assert not (tmp_path / "never").exists()


def test_a_controlled_run_killed_and_resumed_ends_bit_for_bit(
    tmp_path, monkeypatch, one_torch_thread
):
    """ETF head, LogitNorm and the entropy term together: the optimizer holds fewer
    parameters than the model, and a resume must still restore each buffer to its own."""
    import ncood.engine.train as engine

    settings = resolve_preset(
        "demo-standard", epochs=2, width=4, train_subset=96, checkpoint_every=2,
        head="etf", loss="logitnorm", entropy_reg=0.05, device="cpu",
    )  # fmt: skip
    whole = engine.train(settings, tmp_path / "whole", show_progress=False)
    real = engine._train_one_epoch

    def killed_at_2(session, epoch, monitor):
        if epoch == 2:
            raise KeyboardInterrupt
        return real(session, epoch, monitor)

    monkeypatch.setattr(engine, "_train_one_epoch", killed_at_2)
    with pytest.raises(KeyboardInterrupt):
        engine.train(settings, tmp_path / "cut", show_progress=False)
    monkeypatch.undo()
    cut, resumed = engine.resume(tmp_path / "cut", show_progress=False)
    assert resumed
    a = load_file(str(whole.root / "checkpoints/epoch-0002.safetensors"))
    b = load_file(str(cut.root / "checkpoints/epoch-0002.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key], b[key]), key
