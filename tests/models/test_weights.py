"""Foreign checkpoints: every container and prefix found, every mismatch one line, and a
pickle that would run code refused before any of it runs."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from ncood.errors import NcoodError
from ncood.models.weights import fit_weights, read_checkpoint


def small_net(classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4, classes)
    )


def randomised(model: nn.Module) -> dict[str, torch.Tensor]:
    """A state dict unlike the model's initial one, BatchNorm statistics included."""
    generator = torch.Generator().manual_seed(1)
    state = {}
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            state[key] = torch.rand(value.shape, generator=generator) + 0.5
        else:
            state[key] = value + 7
    return state


def same_state(model: nn.Module, state: dict[str, torch.Tensor]) -> bool:
    loaded = model.state_dict()
    return set(loaded) == set(state) and all(torch.equal(loaded[k], state[k]) for k in state)


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda s: s, id="plain"),
        pytest.param(lambda s: {"state_dict": s, "epoch": 3, "lr": 0.1}, id="state_dict"),
        pytest.param(lambda s: {"model": s, "optimizer": {"state": {}}}, id="model"),
        pytest.param(lambda s: {"net": s}, id="net"),
        pytest.param(lambda s: {"module." + k: v for k, v in s.items()}, id="ddp"),
        pytest.param(lambda s: {"_orig_mod." + k: v for k, v in s.items()}, id="compiled"),
        pytest.param(
            lambda s: {"state_dict": {"module._orig_mod." + k: v for k, v in s.items()}},
            id="nested-ddp-compiled",
        ),
        pytest.param(lambda s: {"state_dict": {"model." + k: v for k, v in s.items()}}, id="pl"),
    ],
)
def test_containers_and_prefixes_load(tmp_path, wrap):
    model, state = small_net(), randomised(small_net())
    path = tmp_path / "weights.pth"
    torch.save(wrap(state), path)
    notes = fit_weights(model, read_checkpoint(path), "small")
    assert same_state(model, state)
    assert isinstance(notes, list)


def test_safetensors_load_and_notes_say_what_was_adapted(tmp_path):
    model, state = small_net(), randomised(small_net())
    path = tmp_path / "weights.safetensors"
    save_file({"module." + k: v for k, v in state.items()}, str(path))
    notes = fit_weights(model, read_checkpoint(path), "small")
    assert same_state(model, state)
    assert notes == ["stripped the 'module.' prefix"]


def test_missing_and_unexpected_keys_are_one_line_naming_the_first(tmp_path):
    state = randomised(small_net())
    state["extra.weight"] = torch.zeros(2)
    for key in ("4.weight", "4.bias"):
        del state[key]
    path = tmp_path / "weights.pt"
    torch.save(state, path)
    with pytest.raises(NcoodError) as caught:
        fit_weights(small_net(), read_checkpoint(path), "small")
    message = str(caught.value)
    assert "\n" not in message
    assert "2 missing (4.weight, 4.bias)" in message
    assert "1 unexpected (extra.weight)" in message


def test_many_missing_keys_are_cut_after_the_first_few(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({f"other{i}.weight": torch.zeros(1) for i in range(9)}, path)
    with pytest.raises(NcoodError, match=r"9 unexpected \(other0.weight, .*, …\)") as caught:
        fit_weights(small_net(), read_checkpoint(path), "small")
    assert str(caught.value).count("other") == 4


def test_wrong_number_of_classes_names_the_head(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(randomised(small_net(classes=10)), path)
    with pytest.raises(NcoodError) as caught:
        fit_weights(small_net(classes=100), read_checkpoint(path), "small", head="4")
    message = str(caught.value)
    assert "4.weight is 10×4 in the file but 100×4 in the model" in message
    assert "has 10 classes" in message and "--num-classes" in message


class Payload:
    """Unpickling this would create a file: the test checks that it never exists."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("how", ["torch.save", "pickle-2", "pickle-4"])
def test_code_executing_pickle_is_refused_and_never_runs(tmp_path, how):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "weights.pth"
    payload = {"trap": Payload(str(marker)), "state_dict": randomised(small_net())}
    if how == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as handle:
            pickle.dump(payload, handle, protocol=int(how[-1]))
    with pytest.raises(NcoodError, match="refused") as caught:
        read_checkpoint(path)
    message = str(caught.value)
    assert "\n" not in message and "weights_only=True" in message
    if how != "pickle-4":  # protocol 4 is refused on its opcodes, before any global is named
        assert "posix.system" in message and "code-executing" in message
    assert not marker.exists()


def test_harmless_but_foreign_objects_are_refused_with_the_class_named(tmp_path):
    import argparse

    path = tmp_path / "weights.ckpt"
    torch.save({"state_dict": randomised(small_net()), "args": argparse.Namespace(lr=1)}, path)
    with pytest.raises(NcoodError, match="argparse.Namespace"):
        read_checkpoint(path)


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("weights.pt", b"not a checkpoint", "refused|not a readable"),
        ("weights.safetensors", b"\x00\x01", "not a readable safetensors"),
        ("weights.h5", b"", "unknown weights format '.h5'"),
    ],
)
def test_unreadable_files_are_one_line(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(NcoodError, match=expected) as caught:
        read_checkpoint(path)
    assert "\n" not in str(caught.value)


def test_a_checkpoint_without_tensors_lists_its_keys(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"epoch": 3, "optimizer": {"lr": 0.1}}, path)
    with pytest.raises(NcoodError, match=r"no state dict found \(top-level keys: 'epoch'"):
        read_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(NcoodError, match="weights file not found"):
        read_checkpoint(tmp_path / "nothing.pth")
