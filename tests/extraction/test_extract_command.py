"""``ncood extract`` as a user runs it: checkpoints written by the tests (torchvision, OpenOOD
key names, three epochs of a short training), the run analyzed and reported, and every wrong
input one line with a non-zero exit."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from typer.testing import CliRunner

from ncood.cli import app
from ncood.datasets import load_data
from ncood.store.features import load_features
from ncood.store.run import RunDir

runner = CliRunner()
LIMIT = 64  # images per split: enough for every analysis (knn needs k = 50), fast on a CPU


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def subset_index(count: int, limit: int) -> torch.Tensor:
    """docs/extract.md's --limit: torch.randperm with seed 0, first N, in original order."""
    if count <= limit:
        return torch.arange(count)
    return torch.randperm(count, generator=torch.Generator().manual_seed(0))[:limit].sort().values


def model_inputs(images_uint8: torch.Tensor, size: int, mean, std) -> torch.Tensor:
    """The documented preprocessing, written out: [0, 1], bilinear resize, normalize."""
    x = images_uint8.float() / 255
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=size < x.shape[-1])
    return (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


def randomise_batchnorm(model: nn.Module, seed: int) -> None:
    """Non-trivial running statistics, so that a model run in train mode would differ."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)


def assert_logits_match(run: RunDir, epoch: int, model: nn.Module, expected_inputs: dict):
    dump = load_features(run.features(epoch))
    with torch.no_grad():
        for split, inputs in expected_inputs.items():
            logits = model.eval()(inputs).numpy()
            stored = dump.splits()[split].logits
            np.testing.assert_allclose(stored, logits, rtol=1e-5, atol=1e-5, err_msg=split)


# --- torchvision on the embedded digits ------------------------------------------------------


@pytest.fixture(scope="module")
def torchvision_run(tmp_path_factory):
    import torchvision

    root = tmp_path_factory.mktemp("tv")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    randomise_batchnorm(model, 1)
    torch.save(model.state_dict(), root / "resnet18.pth")
    result = invoke(
        "extract",
        "--model",
        "torchvision:resnet18",
        "--weights",
        root / "resnet18.pth",
        "--dataset",
        "digits",
        "--ood",
        "photos,noise",
        "--image-size",
        "16",
        "--limit",
        LIMIT,
        "--out",
        root / "run",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    return root, model, RunDir.open(root / "run")


def test_torchvision_logits_equal_the_models_own_forward(torchvision_run):
    root, model, run = torchvision_run
    ind, ood = load_data("digits", ["photos", "noise"], None)
    sets = {"train": ind.train, "test": ind.test, "ood/photos": ood["photos"]}
    sets["ood/noise"] = ood["noise"]
    inputs = {}
    for split, images in sets.items():
        chosen = images.images[subset_index(len(images), LIMIT)]
        inputs[split] = model_inputs(chosen, 16, ind.mean, ind.std)
    assert_logits_match(run, 1, model, inputs)

    manifest = run.manifest()
    assert manifest["source"] == "imported" and not run.history_path.exists()
    assert manifest["model"]["name"] == "torchvision:resnet18"
    assert manifest["model"]["head"] == "fc" and manifest["model"]["feature_dim"] == 512
    [weights] = manifest["weights"]
    digest = hashlib.sha256((root / "resnet18.pth").read_bytes()).hexdigest()
    assert weights["sha256"] == digest and weights["epoch"] == 1
    assert manifest["preprocessing"]["image_size"] == 16
    assert manifest["preprocessing"]["mean"] == list(ind.mean)
    assert manifest["dataset"]["ood"] == {"photos": LIMIT, "noise": LIMIT}
    assert set(manifest["versions"]) >= {"ncood", "torch", "torchvision", "python", "numpy"}
    assert manifest["files"] == {
        "features/epoch-0001.safetensors": run.checksums()["features/epoch-0001.safetensors"]
    }


def test_analyze_works_on_the_imported_run(torchvision_run):
    _, _, run = torchvision_run
    result = invoke("analyze", run.root, "--quiet", "--plugins", "msp,energy,mahalanobis,nc")
    assert result.exit_code == 0, result.output
    results = run.results_for(1)
    assert 0.0 <= results["ood"]["noise"]["energy"]["auroc"] <= 1.0
    assert np.isfinite(results["nc"]["nc1"])


# --- OpenOOD's ResNet18_32x32 ----------------------------------------------------------------


class ReferenceBlock(nn.Module):
    """OpenOOD's BasicBlock as its source describes it, the test's own reference."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + self.shortcut(x))


class ReferenceResNet18_32x32(nn.Module):  # noqa: N801
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin = 64
        for index, cout in enumerate((64, 128, 256, 512)):
            stride = 1 if index == 0 else 2
            layer = nn.Sequential(ReferenceBlock(cin, cout, stride), ReferenceBlock(cout, cout, 1))
            setattr(self, f"layer{index + 1}", layer)
            cin = cout
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).view(x.shape[0], -1))


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def cifar10_dir(tmp_path, monkeypatch):
    """A tiny CIFAR-10 in its published python format (checksums set to the files')."""
    from torchvision.datasets import CIFAR10

    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = ["data_batch_1", "test_batch"]
    for name, count in zip(names, (20, 10), strict=True):
        data = rng.integers(0, 256, (count, 3072), dtype=np.uint8)
        with open(folder / name, "wb") as handle:
            pickle.dump({"data": data, "labels": [i % 10 for i in range(count)]}, handle, 2)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, handle, 2)
    monkeypatch.setattr(CIFAR10, "train_list", [["data_batch_1", md5(folder / names[0])]])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5(folder / names[1])]])
    monkeypatch.setattr(
        CIFAR10,
        "meta",
        {"filename": "batches.meta", "key": "label_names", "md5": md5(folder / "batches.meta")},
    )
    return tmp_path / "data"


def openood_checkpoint() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    torch.manual_seed(3)
    reference = ReferenceResNet18_32x32(10)
    randomise_batchnorm(reference, 4)
    state = reference.state_dict()
    # OpenOOD's names, as its released checkpoints have them
    assert {"layer2.0.shortcut.0.weight", "layer2.0.shortcut.1.running_var", "fc.bias"} <= set(
        state
    )
    assert "layer1.0.shortcut.0.weight" not in state and len(state) == 122
    return reference, state


@pytest.mark.parametrize(
    "arch, name, wrap",
    [
        ("openood:resnet18_32x32", "best.ckpt", lambda s: s),
        ("openood:resnet18_32x32", "ddp.pth", lambda s: {"module." + k: v for k, v in s.items()}),
        (
            "openood:resnet18_32x32",
            "nested.pt",
            lambda s: {"epoch": 100, "net": {"_orig_mod." + k: v for k, v in s.items()}},
        ),
        ("resnet18-cifar", "best.ckpt", lambda s: s),  # ncood's own network, OpenOOD's keys
    ],
)
def test_openood_checkpoint_reproduces_its_logits(tmp_path, cifar10_dir, arch, name, wrap):
    reference, state = openood_checkpoint()
    torch.save(wrap(state), tmp_path / name)
    out = tmp_path / "run"
    result = invoke(
        "extract",
        "--model",
        arch,
        "--weights",
        tmp_path / name,
        "--dataset",
        "cifar10",
        "--ood",
        "noise",
        "--data-dir",
        cifar10_dir,
        "--no-download",
        "--image-size",
        "16",
        "--normalize",
        "0.4914,0.4822,0.4465/0.2470,0.2435,0.2616",
        "--out",
        out,
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    ind, ood = load_data("cifar10", ["noise"], cifar10_dir, download=False)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    inputs = {
        split: model_inputs(images.images, 16, mean, std)
        for split, images in (("train", ind.train), ("test", ind.test), ("ood/noise", ood["noise"]))
    }
    assert_logits_match(RunDir.open(out), 1, reference, inputs)


def test_openood_safetensors_checkpoint(tmp_path, cifar10_dir):
    reference, state = openood_checkpoint()
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    result = invoke(
        "extract",
        "--model",
        "openood:resnet18_32x32",
        "--weights",
        tmp_path / "w.safetensors",
        "--dataset",
        "cifar10",
        "--data-dir",
        cifar10_dir,
        "--no-download",
        "--image-size",
        "16",
        "--out",
        tmp_path / "run",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    ind, _ = load_data("cifar10", [], cifar10_dir, download=False)
    inputs = {"test": model_inputs(ind.test.images, 16, ind.mean, ind.std)}
    assert_logits_match(RunDir.open(tmp_path / "run"), 1, reference, inputs)


# --- several checkpoints of one training -----------------------------------------------------


@pytest.fixture(scope="module")
def three_epoch_run(tmp_path_factory):
    """A short training outside ncood (plain SGD on digits), a checkpoint per epoch, the way
    a training script saves them; imported with the file list a shell glob gives."""
    from ncood.engine.resnet import ResNet18

    root = tmp_path_factory.mktemp("three")
    ind, _ = load_data("digits", [], None)
    x = model_inputs(ind.train.images[:128], 32, ind.mean, ind.std)
    y = ind.train.labels[:128]
    torch.manual_seed(0)
    model = ResNet18(10, width=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    (root / "ckpt").mkdir()
    for epoch in (1, 2, 3):
        for start in range(0, 128, 32):
            loss = F.cross_entropy(model(x[start : start + 32]), y[start : start + 32])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        state = {"module." + k: v for k, v in model.state_dict().items()}
        torch.save({"epoch": epoch, "state_dict": state}, root / "ckpt" / f"epoch_{epoch}.pth")
    files = sorted((root / "ckpt").glob("epoch_*.pth"))
    result = invoke(
        "extract",
        "--model",
        "resnet18-cifar",
        "--model-arg",
        "width=4",
        "--weights",
        *files,
        "--dataset",
        "digits",
        "--ood",
        "noise",
        "--limit",
        LIMIT,
        "--out",
        root / "run",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    result = invoke("analyze", root / "run", "--epoch", "all", "--quiet")
    assert result.exit_code == 0, result.output
    return RunDir.open(root / "run"), files


def test_three_checkpoints_give_a_three_epoch_run(three_epoch_run):
    run, files = three_epoch_run
    assert run.feature_epochs() == [1, 2, 3] and run.analyzed_epochs() == [1, 2, 3]
    manifest = run.manifest()
    assert [w["epoch"] for w in manifest["weights"]] == [1, 2, 3]
    assert [Path(w["file"]).name for w in manifest["weights"]] == [f.name for f in files]
    assert manifest["weights"][0]["adapted"] == [
        "state dict under 'state_dict'",
        "stripped the 'module.' prefix",
    ]
    assert manifest["config"]["epochs"] == 3 and manifest["model"]["arguments"] == {"width": 4}
    heads = [load_features(run.features(e)).head.weight for e in (1, 2, 3)]
    assert not np.array_equal(heads[0], heads[2])  # each file really was loaded


def test_mixed_report_of_imported_and_trained_runs(three_epoch_run, torchvision_run, demo_run):
    """One document: a run ncood trained (curves) and two imported ones (origin, accuracies,
    no curves); the imported three-epoch run has its NC progression drawn."""
    from ncood.report.build import build_report
    from ncood.report.context import load_analyzed_run

    imported, _ = three_epoch_run
    _, _, torchvision = torchvision_run
    result = invoke("analyze", torchvision.root, "--quiet")
    assert result.exit_code == 0, result.output
    out = imported.root.parent / "report"
    runs = [demo_run.root, imported.root, torchvision.root]
    report = build_report(runs, lang="en", out_dir=out, name="mixed", pdf=True)
    assert report.pdf is not None and report.pdf.is_file(), report.message
    tex = report.tex.read_text(encoding="utf-8")
    assert "torchvision:resnet18" in tex and "epoch\\_1.pth" in tex
    assert tex.count("fig:training-") >= 1  # the trained run keeps its curves
    assert "training-run2" not in tex and "training-run3" not in tex  # none for imported
    figures = {p.name for p in (out / "mixed-figures").iterdir()}
    assert "nc-nc1-nc3-progress.pdf" in figures
    analyzed = load_analyzed_run(imported.root)
    assert [e for e, _ in analyzed.series("nc1")] == [1, 2, 3]  # what the figure plots
    assert json.loads((imported.root / "manifest.json").read_text())["source"] == "imported"


# --- one line each, non-zero exit ------------------------------------------------------------


def one_line_error(result) -> str:
    assert result.exit_code != 0
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("ncood: error:") and "Traceback" not in result.output
    return lines[0]


@pytest.fixture
def small_checkpoint(tmp_path):
    import torchvision

    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), tmp_path / "r18.pth")
    return tmp_path / "r18.pth"


def base_args(weights, out, model="torchvision:resnet18"):
    fixed = ["--dataset", "digits", "--ood", "noise", "--limit", "8", "--image-size", "16"]
    return ["extract", "--model", model, "--weights", weights, *fixed, "--out", out, "--quiet"]


def test_wrong_num_classes(tmp_path, small_checkpoint):
    line = one_line_error(
        invoke(*base_args(small_checkpoint, tmp_path / "a"), "--num-classes", 100)
    )
    assert "--num-classes 100" in line and "digits has 10 classes" in line
    import torchvision

    torch.save(torchvision.models.resnet18(num_classes=100).state_dict(), tmp_path / "c100.pth")
    line = one_line_error(invoke(*base_args(tmp_path / "c100.pth", tmp_path / "b")))
    assert "fc.weight is 100×512 in the file but 10×512 in the model" in line
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_unknown_arch(tmp_path, small_checkpoint):
    line = one_line_error(invoke(*base_args(small_checkpoint, tmp_path / "a", model="resnet999")))
    assert "unknown model 'resnet999'" in line and "torchvision:*" in line
    line = one_line_error(
        invoke(*base_args(small_checkpoint, tmp_path / "a", model="torchvision:resnet1800"))
    )
    assert "torchvision has no classification model 'resnet1800'" in line


def test_timm_without_timm(tmp_path, small_checkpoint, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "timm", None)  # import timm raises, installed or not
    line = one_line_error(
        invoke(*base_args(small_checkpoint, tmp_path / "a", model="timm:resnet18"))
    )
    assert "needs timm, which is not installed" in line and "pip install timm" in line


class SoftmaxHead(nn.Module):
    """A classifier whose forward ends with a softmax: its outputs are not affine logits."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x):
        return torch.softmax(self.fc(torch.flatten(self.body(x), 1)), dim=1)


def test_head_that_is_not_affine(tmp_path):
    torch.manual_seed(0)
    save_file(SoftmaxHead().state_dict(), str(tmp_path / "soft.safetensors"))
    line = one_line_error(
        invoke(
            *base_args(
                tmp_path / "soft.safetensors", tmp_path / "a", model=f"{__name__}:SoftmaxHead"
            )
        )
    )
    assert "not features @ W.T + b of 'fc'" in line and "--feature-layer" in line


def test_code_executing_pickle_is_refused(tmp_path):
    import os

    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"state_dict": {}, "trap": Payload()}, tmp_path / "evil.pth")
    line = one_line_error(invoke(*base_args(tmp_path / "evil.pth", tmp_path / "a")))
    assert "refused" in line and "posix.system" in line
    assert not marker.exists() and not (tmp_path / "a").exists()


def test_epochs_that_cannot_be_read_and_existing_out(tmp_path, small_checkpoint):
    other = tmp_path / "final.pth"
    other.write_bytes(small_checkpoint.read_bytes())
    line = one_line_error(invoke(*base_args(small_checkpoint, tmp_path / "a"), other))
    assert "cannot read an epoch from 'final.pth'" in line and "--epochs" in line
    line = one_line_error(
        invoke(*base_args(small_checkpoint, tmp_path / "a"), other, "--epochs", "1,2,3")
    )
    assert "--epochs gives 3 epochs for 2 weights files" in line
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "something").write_text("x")
    line = one_line_error(invoke(*base_args(small_checkpoint, tmp_path / "full")))
    assert "is not empty; give --force" in line


def test_a_quoted_glob_is_expanded_like_the_shell_would(tmp_path):
    from ncood.cli.extract import _expand
    from ncood.errors import NcoodError

    for epoch in (10, 2, 1):
        (tmp_path / f"epoch_{epoch}.pth").write_bytes(b"")
    expanded = _expand([tmp_path / "epoch_*.pth"])
    assert sorted(p.name for p in expanded) == ["epoch_1.pth", "epoch_10.pth", "epoch_2.pth"]
    with pytest.raises(NcoodError, match="no weights file matches"):
        _expand([tmp_path / "other_*.pt"])
