"""The features file: round trip, and one clear error for each kind of bad file."""

import numpy as np
import pytest
from safetensors.numpy import save_file

from ncood.errors import NcoodError
from ncood.store.features import load_features, save_features


def test_round_trip_keeps_every_array(tmp_path, tiny_dump):
    path = tmp_path / "f.safetensors"
    save_features(path, tiny_dump)
    back = load_features(path)
    np.testing.assert_array_equal(back.train.features, tiny_dump.train.features)
    np.testing.assert_array_equal(back.ood["blobs"].labels, tiny_dump.ood["blobs"].labels)
    np.testing.assert_array_equal(back.head.weight, tiny_dump.head.weight)
    assert back.metadata["format"] == "ncood-features"
    assert not list(tmp_path.glob(".*tmp"))


def _tensors(dump):
    path_tensors = {}
    for name, split in dump.splits().items():
        path_tensors[f"{name}/features"] = split.features
        path_tensors[f"{name}/logits"] = split.logits
        path_tensors[f"{name}/labels"] = split.labels
    path_tensors["head/weight"] = dump.head.weight
    path_tensors["head/bias"] = dump.head.bias
    return path_tensors


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t.pop("test/logits"), "missing tensor 'test/logits'"),
        (lambda t: t.__setitem__("train/features", t["train/features"][:, :3]), "split 'train'"),
        (lambda t: t.__setitem__("train/labels", t["train/labels"] + 10), "labels outside"),
        (lambda t: t["test/features"].__setitem__((0, 0), np.nan), "1 non-finite features"),
    ],
)
def test_bad_files_give_one_clear_error(tmp_path, tiny_dump, mutate, message):
    tensors = {k: np.array(v) for k, v in _tensors(tiny_dump).items()}
    mutate(tensors)
    path = tmp_path / "bad.safetensors"
    save_file(tensors, str(path))
    with pytest.raises(NcoodError, match=message.replace("(", r"\(")):
        load_features(path)


def test_not_a_safetensors_file(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_text("hello")
    with pytest.raises(NcoodError, match="not a readable safetensors"):
        load_features(path)
