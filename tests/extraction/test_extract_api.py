"""``ncood.extract``: a model and its data (tensors or loaders) become an ordinary run whose
features file holds exactly what the model computes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ncood.errors import NcoodError
from ncood.extraction.api import extract
from ncood.store.features import load_features
from ncood.store.run import RunDir


class Tiny(nn.Module):
    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.classifier = nn.Linear(8, classes)

    def features(self, x):
        return torch.flatten(self.body(x), 1)

    def forward(self, x):
        return self.classifier(self.features(x))


def data(count: int, seed: int, classes: int = 3):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(count, 3, 6, 6, generator=generator)
    return images, torch.arange(count) % classes


@pytest.mark.parametrize("as_loader", [False, True], ids=["tensors", "loaders"])
def test_the_run_holds_what_the_model_computes(tmp_path, as_loader):
    model = Tiny().eval()
    train, test, noise = data(23, 0), data(9, 1), data(11, 2)[0]
    if as_loader:
        given = {
            "train": DataLoader(TensorDataset(*train), batch_size=5),
            "test": DataLoader(TensorDataset(*test), batch_size=4),
            "ood": {"noise": DataLoader(TensorDataset(noise), batch_size=6)},
        }
    else:
        given = {"train": train, "test": test, "ood": {"noise": noise}}
    out = extract(model, **given, out=tmp_path / "run", dataset="toy", epoch=7, batch_size=4)

    run = RunDir.open(out)
    assert run.feature_epochs() == [7] and not run.history_path.exists()
    dump = load_features(run.features(7))
    with torch.no_grad():
        for split, images, labels in (
            (dump.train, *train),
            (dump.test, *test),
            (dump.ood["noise"], noise, torch.full((11,), -1)),
        ):
            assert np.allclose(split.features, model.features(images).numpy(), atol=1e-6)
            assert np.allclose(split.logits, model(images).numpy(), atol=1e-6)
            assert np.array_equal(split.labels, labels.numpy())
    assert np.array_equal(dump.head.weight, model.classifier.weight.detach().numpy())
    assert np.array_equal(dump.head.bias, model.classifier.bias.detach().numpy())

    manifest = run.manifest()
    assert manifest["source"] == "imported" and manifest["status"] == "complete"
    assert manifest["dataset"] == {
        "name": "toy",
        "num_classes": 3,
        "train_size": 23,
        "test_size": 9,
        "ood": {"noise": 11},
        "mean": None,
        "std": None,
    }
    assert manifest["model"]["head"] == "classifier" and manifest["model"]["feature_dim"] == 8
    assert manifest["weights"] == []
    [evaluation] = manifest["evaluation"]
    with torch.no_grad():
        test_acc = float((model(test[0]).argmax(1) == test[1]).float().mean())
    assert evaluation["epoch"] == 7 and evaluation["test_acc"] == pytest.approx(test_acc)
    assert set(manifest["files"]) == {"features/epoch-0007.safetensors"}
    assert model.training is False  # left as it came


def test_a_failed_extraction_keeps_the_previous_run(tmp_path):
    model = Tiny()
    train, test = data(6, 0), data(6, 1)
    out = extract(model, train=train, test=test, out=tmp_path / "run")
    before = (out / "manifest.json").read_text()

    with pytest.raises(NcoodError, match="is not empty; give --force"):
        extract(model, train=train, test=test, out=out)
    bad_labels = (test[0], test[1] + 5)  # outside the model's 3 classes
    with pytest.raises(NcoodError, match=r"label 7 outside \[0, 3\)"):
        extract(model, train=train, test=bad_labels, out=out, force=True)
    assert (out / "manifest.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging folder left

    extract(model, train=train, test=test, out=out, force=True, epoch=2)
    assert json.loads((out / "manifest.json").read_text())["config"]["checkpoint_epochs"] == [2]
    assert RunDir.open(out).feature_epochs() == [2]


def test_inputs_that_cannot_be_sized_or_read_are_one_line(tmp_path):
    model, train = Tiny(), data(6, 0)
    with pytest.raises(NcoodError, match="drop_last"):
        extract(
            model,
            train=DataLoader(TensorDataset(*train), batch_size=4, drop_last=True),
            test=train,
            out=tmp_path / "a",
        )
    with pytest.raises(NcoodError, match="give a DataLoader, a tensor"):
        extract(model, train=train, test=42, out=tmp_path / "b")
    with pytest.raises(NcoodError, match="6 images but 5 labels"):
        extract(model, train=(train[0], train[1][:5]), test=train, out=tmp_path / "c")
    with pytest.raises(NcoodError, match="torch.nn.Module"):
        extract(lambda x: x, train=train, test=train, out=tmp_path / "d")
    assert not list(tmp_path.iterdir())


def test_the_public_names_load_lazily():
    """`import ncood` (every plugin does it for hookimpl) must not pull in torch or numpy;
    ncood.extract, list_models and create_model import what they need when first used."""
    import subprocess
    import sys

    code = (
        "import sys, ncood\n"
        "assert not {'torch', 'numpy'} & set(sys.modules), sorted(sys.modules)\n"
        "assert callable(ncood.extract) and callable(ncood.create_model)\n"
        "assert 'openood:resnet18_32x32' in ncood.list_models('openood:*')\n"
        "print(type(ncood.create_model('openood:resnet18_32x32', 7).fc).__name__)\n"
        "assert 'torch' in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Linear"
