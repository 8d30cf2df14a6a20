"""``ncood extract`` on image sets left on disk: a generated ``folder:`` tree of JPEGs of several
sizes is decoded by loader workers and preprocessed as a plain torchvision pipeline does
(ImageFolder + Resize + CenterCrop + ToTensor + Normalize), the manifest records it, and the
model-based scorers stream the same files with the same preprocessing when they rerun the net."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from ncood.cli import app
from ncood.store.features import load_features
from ncood.store.run import RunDir

runner = CliRunner()
CLASSES = ("cat", "dog", "eel")
RESIZE, CROP = 72, 64  # 64 px keeps resnet18's last maps 2×2 (RankFeat needs rank > 1)
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def write_jpegs(folder: Path, count: int, rng: np.random.Generator) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        width, height = rng.integers(50, 130, 2)
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index:03d}.JPEG", quality=90)


def plain_inputs(folder: Path, resize: int, crop: int, mean, std) -> tuple[torch.Tensor, list]:
    """The peer pipeline written out: torchvision's ImageFolder (or a flat folder) + transforms."""
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    transform = transforms.Compose(
        [
            transforms.Resize(resize),
            transforms.CenterCrop(crop),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )
    if any(p.is_dir() for p in folder.iterdir()):
        dataset = ImageFolder(str(folder), transform=transform)
        return torch.stack([x for x, _ in dataset]), [y for _, y in dataset]
    paths = sorted(folder.iterdir())
    images = [transform(Image.open(p).convert("RGB")) for p in paths]
    return torch.stack(images), [-1] * len(paths)


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    import torchvision

    root = tmp_path_factory.mktemp("files")
    rng = np.random.default_rng(0)
    for split, count in (("train", 8), ("val", 4)):
        for name in CLASSES:
            write_jpegs(root / "set" / split / name, count, rng)
    write_jpegs(root / "far", 6, rng)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=len(CLASSES)).eval()
    torch.save(model.state_dict(), root / "r18.pth")
    result = invoke(
        "extract",
        "--model",
        "torchvision:resnet18",
        "--weights",
        root / "r18.pth",
        "--dataset",
        f"folder:{root / 'set'}",
        "--ood",
        f"folder:{root / 'far'}",
        "--resize",
        RESIZE,
        "--crop",
        CROP,
        "--workers",
        2,
        "--batch-size",
        5,  # batches that straddle the classes
        "--out",
        root / "run",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    expected = {
        "train": plain_inputs(root / "set" / "train", RESIZE, CROP, *IMAGENET),
        "test": plain_inputs(root / "set" / "val", RESIZE, CROP, *IMAGENET),
        "ood/far": plain_inputs(root / "far", RESIZE, CROP, *IMAGENET),
    }
    return root, model, RunDir.open(root / "run"), expected


def test_features_equal_a_plain_torchvision_pipeline(folder_run):
    _, model, run, expected = folder_run
    dump = load_features(run.features(1))
    head_input = {}
    model.fc.register_forward_hook(lambda _m, args, _o: head_input.__setitem__("x", args[0]))
    for split, (inputs, labels) in expected.items():
        with torch.no_grad():
            logits = model(inputs).numpy()
        stored = dump.splits()[split]
        np.testing.assert_allclose(stored.logits, logits, rtol=1e-4, atol=1e-4, err_msg=split)
        np.testing.assert_allclose(
            stored.features, head_input["x"].numpy(), rtol=1e-4, atol=1e-4, err_msg=split
        )
        assert stored.labels.tolist() == labels


def test_manifest_records_the_preprocessing(folder_run):
    root, _, run, _ = folder_run
    manifest = run.manifest()
    recorded = manifest["preprocessing"]
    assert (recorded["resize"], recorded["crop"]) == (RESIZE, CROP)
    assert recorded["interpolation"] == "bilinear" and recorded["image_size"] is None
    assert tuple(recorded["mean"]) == IMAGENET[0] and tuple(recorded["std"]) == IMAGENET[1]
    assert manifest["config"]["dataset_spec"] == f"folder:{root / 'set'}"
    assert manifest["dataset"]["num_classes"] == 3
    assert manifest["dataset"]["train_size"] == 24 and manifest["dataset"]["ood"] == {"far": 6}


def test_model_based_scorers_stream_the_same_files(folder_run):
    from ncood.extraction.rerun import open_model_inputs

    _, _, run, expected = folder_run
    inputs = open_model_inputs(run, 1, device=torch.device("cpu"), batch_size=7)
    for split, (images, labels) in expected.items():
        batches = list(inputs.splits[split])
        streamed = torch.cat([x for x, _ in batches])
        torch.testing.assert_close(streamed, images, rtol=0, atol=1e-6)
        assert torch.cat([y for _, y in batches]).tolist() == labels
    result = invoke("analyze", run.root, "--quiet", "--plugins", "msp,odin,mcd,gram,rankfeat")
    assert result.exit_code == 0, result.output
    scored = run.results_for(1)["ood"]["far"]
    for name in ("msp", "odin", "mcd", "gram", "rankfeat"):
        assert 0.0 <= scored[name]["auroc"] <= 1.0, name


def test_ood_folder_at_full_resolution_beside_an_in_memory_set(tmp_path):
    """digits (32-px, in memory) + a folder of large images: the folder is decoded from its
    files straight to 32 px (shorter side, then centre crop), and odin reruns on it."""
    import torchvision

    write_jpegs(tmp_path / "far", 5, np.random.default_rng(1))
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    torch.save(model.state_dict(), tmp_path / "r18.pth")
    result = invoke(
        "extract",
        "--model",
        "torchvision:resnet18",
        "--weights",
        tmp_path / "r18.pth",
        "--dataset",
        "digits",
        "--ood",
        f"folder:{tmp_path / 'far'}",
        "--limit",
        60,
        "--workers",
        0,
        "--out",
        tmp_path / "run",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    run = RunDir.open(tmp_path / "run")
    recorded = run.manifest()["preprocessing"]
    assert (recorded["resize"], recorded["crop"]) == (32, 32)
    expected, _ = plain_inputs(tmp_path / "far", 32, 32, recorded["mean"], recorded["std"])
    with torch.no_grad():
        logits = model(expected).numpy()
    stored = load_features(run.features(1)).splits()["ood/far"].logits
    np.testing.assert_allclose(stored, logits, rtol=1e-4, atol=1e-4)
    result = invoke("analyze", run.root, "--quiet", "--plugins", "odin")
    assert result.exit_code == 0, result.output


def one_line(result, *fragments):
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_wrong_inputs_are_one_line(folder_run, tmp_path):
    root, _, _, _ = folder_run
    common = ["extract", "--model", "torchvision:resnet18", "--weights", root / "r18.pth"]
    folder = f"folder:{root / 'set'}"
    result = invoke(*common, "--dataset", folder, "--image-size", 64, "--out", tmp_path / "a")
    one_line(result, "--image-size", "--resize and --crop")
    result = invoke(*common, "--dataset", "digits", "--crop", 64, "--out", tmp_path / "b")
    one_line(result, "--resize/--crop", "--image-size")
    result = invoke(*common, "--dataset", folder, "--crop", 300, "--out", tmp_path / "c")
    one_line(result, "--crop 300 is larger than --resize 256")
    result = invoke(*common, "--dataset", folder, "--workers", -1, "--out", tmp_path / "w")
    one_line(result, "--workers must be 0")
    broken = tmp_path / "broken"
    write_jpegs(broken, 2, np.random.default_rng(2))
    (broken / "001.JPEG").write_bytes(b"not a jpeg")
    result = invoke(
        *common,
        "--dataset",
        folder,
        "--ood",
        f"folder:{broken}",
        "--out",
        tmp_path / "d",
        "--quiet",
    )
    one_line(result, "could not read image", str(broken / "001.JPEG"))
    result = runner.invoke(
        app,
        ["train", "--preset", "demo-standard", "--dataset", folder, "--out", str(tmp_path / "e")],
    )
    one_line(result, "ncood extract")


@pytest.mark.parametrize("lang, words", [("en", "shorter side resized to 72"), ("fr", "à 72")])
def test_report_states_the_resize_and_crop(folder_run, tmp_path, lang, words):
    from ncood.report.build import core_templates
    from ncood.report.context import ReportContext, load_strings
    from ncood.report.imported import imported_facts
    from ncood_plugins.sections.training import _preprocessing_text

    _, _, run, _ = folder_run
    facts = imported_facts(run.manifest())
    assert (facts.resize, facts.crop) == (RESIZE, CROP)
    ctx = ReportContext([], lang, tmp_path, tmp_path, load_strings(lang, [core_templates()]))
    text = str(_preprocessing_text(ctx, facts))
    assert words in text and "64" in text and "<" not in text
