"""Pretrained weights by name: the preprocessing is the library's own (compared with the
transforms torchvision and timm build), and the file is looked for exactly where each
library's cache keeps it (TORCH_HOME, HF_HOME pointed at a temporary folder)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from ncood.errors import NcoodError
from ncood.models.named_weights import (
    cached_file,
    is_weights_name,
    named_weights,
    weights_preprocessing,
)


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty torch hub and Hugging Face caches; no download is ever attempted here."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return tmp_path


def test_torchvision_preprocessing_is_the_weights_transforms():
    import torchvision

    weights = torchvision.models.ResNet50_Weights.IMAGENET1K_V2
    published = weights.transforms()
    found = weights_preprocessing("torchvision:ResNet50_Weights.IMAGENET1K_V2")
    assert (found.resize, found.crop) == (published.resize_size[0], published.crop_size[0])
    assert (found.resize, found.crop) == (232, 224)  # torchvision's docs for these weights
    assert list(found.mean) == list(published.mean) and list(found.std) == list(published.std)
    assert found.interpolation == published.interpolation.value == "bilinear"
    described = found.describe()
    assert described["mean"] == [0.485, 0.456, 0.406] and described["resize"] == 232


def test_timm_preprocessing_is_timms_eval_transform():
    import timm
    from timm.data import create_transform, resolve_data_config
    from torchvision import transforms

    found = weights_preprocessing("timm:resnet50.a1_in1k")
    model = timm.create_model("resnet50.a1_in1k", pretrained=False)
    steps = create_transform(**resolve_data_config({}, model=model)).transforms
    resize = next(t for t in steps if isinstance(t, transforms.Resize))
    crop = next(t for t in steps if isinstance(t, transforms.CenterCrop))
    normalize = next(t for t in steps if isinstance(t, transforms.Normalize))
    # timm floors 224 / 0.95 = 235.8 to 235 (transforms_imagenet_eval)
    assert (found.resize, found.crop) == (resize.size, crop.size[0]) == (235, 224)
    assert found.interpolation == resize.interpolation.value == "bicubic"
    assert torch.allclose(torch.tensor(found.mean), torch.as_tensor(normalize.mean).float())
    assert torch.allclose(torch.tensor(found.std), torch.as_tensor(normalize.std).float())


def test_a_name_fixes_model_and_classes_and_defaults_to_the_default_tag():
    torchvision = named_weights("torchvision:ResNet18_Weights.DEFAULT")
    assert torchvision.name == "torchvision:ResNet18_Weights.IMAGENET1K_V1"
    assert (torchvision.model, torchvision.num_classes) == ("torchvision:resnet18", 1000)
    timm = named_weights("timm:resnet50")  # timm's default tag for resnet50
    assert (timm.name, timm.model, timm.num_classes) == (
        "timm:resnet50.a1_in1k",
        "timm:resnet50",
        1000,
    )


def test_torch_hub_file_is_found_where_torch_hub_keeps_it(caches):
    weights = named_weights("torchvision:ResNet50_Weights.IMAGENET1K_V2")
    expected = caches / "torch" / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth"
    assert weights.files == (expected,)
    assert torch.hub.get_dir() == str(caches / "torch" / "hub")  # torch's own answer
    with pytest.raises(NcoodError) as missing:
        cached_file(weights)
    line = str(missing.value)
    assert "\n" not in line and str(expected) in line and weights.source in line
    expected.parent.mkdir(parents=True)
    expected.write_bytes(b"x")
    assert cached_file(weights) == expected


def test_hugging_face_cache_in_the_hub_clients_layout_and_the_documented_one(caches):
    weights = named_weights("timm:test_resnet.r160_in1k")
    repo = caches / "hf" / "hub" / "models--timm--test_resnet.r160_in1k"
    with pytest.raises(NcoodError) as missing:
        cached_file(weights)
    documented = repo / "snapshots" / "main" / "model.safetensors"
    assert str(documented) in str(missing.value) and "\n" not in str(missing.value)
    # what hf_hub_download writes: refs/main names the commit, snapshots/<commit>/ holds it
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    save_file({"a": torch.zeros(1)}, str(repo / "snapshots" / commit / "pytorch_model.bin"))
    assert cached_file(weights) == repo / "snapshots" / commit / "pytorch_model.bin"
    # the safetensors file is preferred, as timm prefers it
    save_file({"a": torch.zeros(1)}, str(repo / "snapshots" / commit / "model.safetensors"))
    assert cached_file(weights).name == "model.safetensors"
    # the one-line message's own instruction works too (no refs/ needed)
    (repo / "refs" / "main").unlink()
    documented.parent.mkdir(parents=True)
    save_file({"a": torch.zeros(1)}, str(documented))
    assert cached_file(weights) == documented


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("torchvision:Foo_Weights.BAR", "torchvision has no weights 'Foo_Weights.BAR'"),
        ("torchvision:resnet50", "torchvision has no weights 'resnet50'"),
        ("timm:resnet50.no_such_tag", "timm has no pretrained weights 'resnet50.no_such_tag'"),
        ("timm:no_such_model", "timm has no pretrained weights 'no_such_model'"),
        ("keras:resnet50", "give a file, or a name torchvision:"),
    ],
)
def test_unknown_names_are_one_line(name, says):
    with pytest.raises(NcoodError, match=says) as error:
        named_weights(name)
    assert "\n" not in str(error.value)


def test_a_file_is_never_taken_for_a_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert is_weights_name("timm:resnet50.a1_in1k")
    assert not is_weights_name("resnet50.pth") and not is_weights_name("hub:resnet50")
    (tmp_path / "timm:resnet50.a1_in1k").write_bytes(b"x")
    assert not is_weights_name("timm:resnet50.a1_in1k")


def test_without_timm_the_name_says_how_to_install_it(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(NcoodError, match="needs timm, which is not installed"):
        named_weights("timm:resnet50.a1_in1k")


def test_a_missing_file_is_fetched_through_torch_hub_which_checks_its_hash(caches):
    """The download goes through torch.hub (a file:// URL stands in for the network): the file
    lands where the cache keeps it, and one whose sha256 is not the name's prefix is refused."""
    import dataclasses

    source = caches / "published.pth"
    torch.save({"w": torch.ones(2)}, source)
    weights = named_weights("torchvision:ResNet18_Weights.IMAGENET1K_V1")
    weights = dataclasses.replace(weights, source=source.as_uri())
    with pytest.raises(NcoodError) as refused:  # resnet18-f37072fd.pth: not this file's hash
        cached_file(weights, download=True)
    line = str(refused.value)
    assert "download failed: invalid hash value" in line and str(weights.files[0]) in line
    assert not weights.files[0].exists()
    unhashed = dataclasses.replace(weights, files=(weights.files[0].with_name("resnet18.pth"),))
    assert cached_file(unhashed, download=True) == unhashed.files[0]
    assert unhashed.files[0].read_bytes() == source.read_bytes()
