"""OpenOOD v1.5's ImageNet-1K protocol end to end, as a researcher runs it: a generated folder in
OpenOOD's layout (JPEGs of realistic sizes, its list files), torchvision's ResNet-18 weights by
name from a pre-filled torch hub cache (no network), ``ncood extract --benchmark`` then
``ncood analyze``. The features are those of a plain torchvision pipeline (the weights' own
``transforms()`` on the same files) to 1e-4, and the analysis reports OpenOOD's near and far
groups without being told them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from openood_layout import imagenet_tree
from PIL import Image
from typer.testing import CliRunner

from ncood.cli import app
from ncood.store.features import load_features
from ncood.store.run import RunDir

runner = CliRunner()
WEIGHTS = "torchvision:ResNet18_Weights.IMAGENET1K_V1"
HUB_FILE = "resnet18-f37072fd.pth"  # the file name in the weights' published URL
NEAR, FAR = ["ssb_hard", "ninco"], ["inaturalist", "textures", "openimage_o"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def benchmark_run(tmp_path_factory):
    import torchvision

    base = tmp_path_factory.mktemp("imagenet1k")
    root = imagenet_tree(base / "openood")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCH_HOME", str(base / "torch"))
        torch.manual_seed(0)
        model = torchvision.models.resnet18(num_classes=1000).eval()
        cached = base / "torch" / "hub" / "checkpoints" / HUB_FILE
        cached.parent.mkdir(parents=True)
        torch.save(model.state_dict(), cached)
        out = base / "run"
        result = invoke(
            *("extract", "--model", "torchvision:resnet18", "--weights", WEIGHTS),
            *("--benchmark", "openood:imagenet1k", "--data-dir", root, "--out", out),
            *("--no-download", "--workers", 0, "--device", "cpu", "--quiet"),
        )
        assert result.exit_code == 0, result.output
        # a 1000-class model on two classes: the logit scorers (class means need every class)
        analyzed = invoke(
            "analyze", out, "--quiet", "--bootstrap", 0, "--plugins", "msp,energy,gen"
        )
        assert analyzed.exit_code == 0, analyzed.output
    return root, model, RunDir.open(out)


def listed(root, list_name: str) -> list:
    lines = (root / "benchmark_imglist" / "imagenet" / list_name).read_text().split("\n")
    folder = "images_classic" if "textures" in list_name else "images_largescale"
    return [root / folder / line.split(" ")[0] for line in lines if line]


def test_features_equal_a_plain_torchvision_pipeline(benchmark_run):
    import torchvision

    root, model, run = benchmark_run
    transform = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()
    head_input = {}
    model.fc.register_forward_hook(lambda _m, args, _o: head_input.__setitem__("x", args[0]))
    splits = load_features(run.features(1)).splits()
    lists = {"train": "train_imagenet.txt", "test": "test_imagenet.txt"}
    lists |= {f"ood/{name}": f"test_{name}.txt" for name in NEAR + FAR}
    for split, list_name in lists.items():
        files = listed(root, list_name)
        batch = torch.stack([transform(Image.open(path).convert("RGB")) for path in files])
        with torch.no_grad():
            logits = model(batch).numpy()
        stored = splits[split]
        np.testing.assert_allclose(stored.logits, logits, rtol=1e-4, atol=1e-4, err_msg=split)
        np.testing.assert_allclose(
            stored.features, head_input["x"].numpy(), rtol=1e-4, atol=1e-4, err_msg=split
        )


def test_analyze_reports_openoods_groups(benchmark_run):
    _, _, run = benchmark_run
    results = json.loads((run.root / "analysis" / "epoch-0001" / "results.json").read_text())
    groups = results["ood_groups"]
    assert {name: group["sets"] for name, group in groups.items()} == {"near": NEAR, "far": FAR}
    for scorer in ("msp", "energy", "gen"):
        for name, members in (("near", NEAR), ("far", FAR)):
            mean = np.mean([results["ood"][s][scorer]["auroc"] for s in members])
            assert groups[name]["scorers"][scorer]["auroc"] == pytest.approx(mean, abs=1e-12)
    assert "val_openimage_o" not in results["ood"]  # the validation set is not a test set
    manifest = run.manifest()
    assert manifest["weights"][0]["name"] == WEIGHTS
    assert (manifest["preprocessing"]["resize"], manifest["preprocessing"]["crop"]) == (256, 224)
