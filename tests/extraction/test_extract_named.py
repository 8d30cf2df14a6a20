"""``ncood extract --weights torchvision:… / timm:…`` offline, from caches the tests fill where
torch hub and the Hugging Face hub keep their files (random weights under the exact names):
the logits are the model's own on the documented preprocessing, the manifest records the
name, the file's sha256 and the preprocessing, and every wrong input is one line."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cli_helpers import one_line_error
from safetensors.torch import save_file
from typer.testing import CliRunner

import ncood
from ncood.cli import app
from ncood.datasets import synthetic_set
from ncood.report.imported import imported_facts
from ncood.store.features import load_features
from ncood.store.run import RunDir

runner = CliRunner()
DATASET = "test-thousand"  # 1000 classes: what ImageNet weights are for
TV_NAME = "torchvision:ResNet18_Weights.IMAGENET1K_V1"
TV_FILE = "resnet18-f37072fd.pth"
TIMM_NAME = "timm:test_resnet.r160_in1k"  # timm's own 0.5M-parameter test model


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def thousand(plugin_host):
    """A 1000-class generated set (16 train, 8 test images) as an in-distribution dataset."""

    class Plugin:
        @ncood.hookimpl
        def register_datasets(self, register):
            register(DATASET, lambda context: synthetic_set(16, 8, num_classes=1000, seed=3))

    plugin_host(Plugin(), "test_thousand_classes")
    return synthetic_set(16, 8, num_classes=1000, seed=3)


@pytest.fixture
def caches(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return tmp_path


def torch_hub_file(caches) -> os.PathLike:
    path = caches / "torch" / "hub" / "checkpoints" / TV_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def args(weights: str, out, *more) -> list:
    return ["extract", "--weights", weights, "--dataset", DATASET, "--ood", "noise", *more]


def expected_logits(model, images_uint8, size, mean, std) -> np.ndarray:
    """The documented in-memory preprocessing, written out: [0, 1], bilinear, normalize."""
    x = images_uint8.float() / 255
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=size < x.shape[-1])
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        return model.eval()(x).numpy()


def test_torchvision_weights_by_name_offline(tmp_path, caches, thousand):
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=1000)
    torch.save(model.state_dict(), torch_hub_file(caches))
    out = tmp_path / "run"
    # --download is on (the default): a cached file is used without any network
    result = invoke(*args(TV_NAME, out), "--image-size", 32, "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    run = RunDir.open(out)
    manifest = run.manifest()
    record = manifest["weights"][0]
    assert record["name"] == TV_NAME and record["file"] == str(torch_hub_file(caches))
    assert record["sha256"] == hashlib.sha256(torch_hub_file(caches).read_bytes()).hexdigest()
    assert record["published_sha256_prefix"] == "f37072fd"
    assert record["published_preprocessing"] == {
        "resize": 256,
        "crop": 224,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "interpolation": "bilinear",
    }
    assert manifest["model"]["name"] == "torchvision:resnet18"  # fixed by the weights
    assert imported_facts(manifest).files == [TV_NAME]  # what the report names
    prep = manifest["preprocessing"]
    assert (prep["normalize"], prep["mean"], prep["std"], prep["image_size"]) == (
        "weights",
        [0.485, 0.456, 0.406],
        [0.229, 0.224, 0.225],
        32,
    )
    stored = load_features(run.features(1)).splits()["test"].logits
    logits = expected_logits(model, thousand.test.images, 32, prep["mean"], prep["std"])
    np.testing.assert_allclose(stored, logits, rtol=1e-5, atol=1e-5)
    # the model-based scorers rebuild the network from the cached file the manifest names
    result = invoke("analyze", out, "--plugins", "odin", "--bootstrap", 0)
    assert result.exit_code == 0, result.output
    results = json.loads((out / "analysis" / "epoch-0001" / "results.json").read_text())
    assert "auroc" in results["ood"]["noise"]["odin"]


def test_timm_weights_by_name_offline_from_the_hugging_face_cache(tmp_path, caches, thousand):
    import timm

    torch.manual_seed(1)
    model = timm.create_model("test_resnet.r160_in1k", pretrained=False)
    repo = caches / "hf" / "hub" / "models--timm--test_resnet.r160_in1k"
    commit = "89abcdef0123456789abcdef0123456789abcdef"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    weights = repo / "snapshots" / commit / "model.safetensors"
    save_file(model.state_dict(), str(weights))
    out = tmp_path / "run"
    result = invoke(
        *args(TIMM_NAME, out),
        "--model",
        "timm:test_resnet",
        "--image-size",
        32,
        "--no-download",
        "--out",
        out,
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    manifest = RunDir.open(out).manifest()
    record = manifest["weights"][0]
    assert (record["name"], record["file"]) == (TIMM_NAME, str(weights))
    assert record["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    published = record["published_preprocessing"]
    assert (published["resize"], published["crop"], published["interpolation"]) == (
        168,  # floor(160 / 0.95), as timm computes it
        160,
        "bilinear",
    )
    assert manifest["preprocessing"]["mean"] == [0.5, 0.5, 0.5]  # the weights', not ImageNet's
    stored = load_features(RunDir.open(out).features(1)).splits()["test"].logits
    logits = expected_logits(model, thousand.test.images, 32, [0.5] * 3, [0.5] * 3)
    np.testing.assert_allclose(stored, logits, rtol=1e-5, atol=1e-5)


def test_an_absent_file_is_one_line_naming_where_to_put_it(tmp_path, caches, thousand):
    out = tmp_path / "run"
    line = one_line_error(invoke(*args(TV_NAME, out), "--no-download", "--out", out))
    assert str(caches / "torch" / "hub" / "checkpoints" / TV_FILE) in line
    assert f"https://download.pytorch.org/models/{TV_FILE}" in line
    assert not out.exists()


def test_an_unsafe_pickle_in_the_cache_is_refused(tmp_path, caches, thousand):
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"fc.weight": Payload()}, torch_hub_file(caches))
    out = tmp_path / "run"
    line = one_line_error(invoke(*args(TV_NAME, out), "--image-size", 16, "--out", out, "--quiet"))
    assert "refused" in line and TV_FILE in line
    assert not marker.exists() and not out.exists()


@pytest.mark.parametrize(
    ("more", "says"),
    [
        (
            ["--model", "torchvision:resnet50"],
            f"--weights {TV_NAME} are torchvision:resnet18's, not torchvision:resnet50's",
        ),
        (["--num-classes", "10"], f"--num-classes 10, but {TV_NAME} have 1000"),
        (["--dataset", "digits"], f"{TV_NAME} have 1000 classes, but digits has 10 classes"),
        ([f"{TV_NAME}"], f"--weights {TV_NAME} stands alone"),
    ],
    ids=["model", "num-classes", "dataset", "two-names"],
)
def test_what_does_not_fit_the_named_weights_is_one_line(tmp_path, caches, thousand, more, says):
    torch.save({}, torch_hub_file(caches))
    out = tmp_path / "run"
    line = one_line_error(invoke(*args(TV_NAME, out), *more, "--out", out))
    assert says in line
    assert not out.exists()
