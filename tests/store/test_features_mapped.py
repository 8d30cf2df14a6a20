"""A features file is opened, not loaded: mapped views, chunked reads, streamed validation."""

import weakref

import numpy as np
import pytest
from nc_builders import noisy_dump
from safetensors.numpy import save_file

import ncood.store.features as features_module
from ncood.errors import NcoodError
from ncood.store.features import Split, load_features, save_features


@pytest.fixture
def saved(tmp_path):
    dump = noisy_dump(num_classes=5, dim=6, with_layers=True)
    path = tmp_path / "f.safetensors"
    save_features(path, dump)
    return dump, path


def test_arrays_are_read_only_views_on_the_file(saved):
    dump, path = saved
    back = load_features(path)
    for array in (back.train.features, back.test.logits, back.train.layers["layer1"]):
        assert not array.flags.writeable and not array.flags.owndata
    np.testing.assert_array_equal(back.train.features, dump.train.features)
    np.testing.assert_array_equal(back.train.layers["layer2"], dump.train.layers["layer2"])
    np.testing.assert_array_equal(back.ood["near"].labels, dump.ood["near"].labels)


@pytest.mark.parametrize("rows", [1, 7, 10_000, None])
def test_chunks_cover_every_row_in_order(saved, rows):
    dump, path = saved
    back = load_features(path)
    for split, reference in ((back.train, dump.train), (back.ood["far"], dump.ood["far"])):
        chunks = list(split.chunks(rows))
        assert chunks[0].start == 0 and chunks[-1].stop == len(split)
        assert all(a.stop == b.start for a, b in zip(chunks, chunks[1:], strict=False))
        if rows:
            assert {len(c) for c in chunks[:-1]} <= {rows}
        for name in ("features", "logits", "labels"):
            joined = np.concatenate([c.part(name) for c in chunks])
            np.testing.assert_array_equal(joined, reference.part(name))
            # read into buffers of the process, not views on the map (whose pages would stay
            # resident); every chunk kept in the list still holds its own rows
            if name != "labels":  # labels are read whole at load; chunks slice them
                assert not any(np.shares_memory(c.part(name), split.part(name)) for c in chunks)


def test_chunks_reuse_a_few_buffers_when_not_kept(saved):
    """A streamed pass allocates its chunk buffers once: a chunk dropped by the consumer has its
    buffer filled again (no allocation per chunk, no allocator setting needed)."""
    _, path = saved
    split = load_features(path).train
    seen: list[weakref.ref] = []  # weak: a freed buffer's address may be handed out again
    allocated = rows = 0
    for chunk in split.chunks(7, ("features",)):
        base = chunk.features.base
        if not any(ref() is base for ref in seen):
            allocated += 1
            seen.append(weakref.ref(base))
        rows += len(chunk)
    assert rows == len(split) and len(split) // 7 > 5
    assert allocated <= 3


def test_a_chunk_kept_while_the_pass_goes_on_keeps_its_values(saved):
    dump, path = saved
    split = load_features(path).train
    kept = []
    for index, chunk in enumerate(split.chunks(5, ("features",))):
        if index % 2 == 0:
            kept.append(chunk)  # held past its turn: its buffer must not be refilled
    for chunk in kept:
        np.testing.assert_array_equal(chunk.features, dump.train.features[chunk.rows])


def test_chunks_read_only_the_parts_asked_for(saved):
    dump, path = saved
    back = load_features(path)
    (first, *_) = back.train.chunks(50, parts=("logits", "layers/layer2"))
    assert first.features is None and first.labels is None
    np.testing.assert_array_equal(first.logits, dump.train.logits[:50])
    np.testing.assert_array_equal(first.layers["layer2"], dump.train.layers["layer2"][:50])
    assert first.rows == slice(0, 50)


def test_in_memory_splits_chunk_the_same_way(tiny_dump):
    split = tiny_dump.train
    joined = np.concatenate([c.features for c in split.chunks(7)])
    np.testing.assert_array_equal(joined, split.features)
    with pytest.raises(ValueError, match="≥ 1"):
        next(split.chunks(0))


def test_non_finite_values_are_counted_across_blocks(tmp_path, tiny_dump, monkeypatch):
    monkeypatch.setattr(features_module, "CHUNK_BYTES", 64)  # a few rows per block
    tensors = {
        f"{n}/{p}": np.array(s.part(p))
        for n, s in tiny_dump.splits().items()
        for p in features_module.PARTS
    }
    tensors |= {"head/weight": tiny_dump.head.weight, "head/bias": tiny_dump.head.bias}
    tensors["train/features"][[0, 13, 50, -1], 1] = [np.nan, np.inf, -np.inf, np.nan]
    path = tmp_path / "bad.safetensors"
    save_file(tensors, str(path))
    with pytest.raises(NcoodError, match="split 'train' has 4 non-finite features"):
        load_features(path)
    assert len(load_features(path, check_finite=False).train) == len(tiny_dump.train)


def test_huge_but_finite_values_are_not_called_non_finite():
    values = np.full((4, 3), 3e38, np.float32)  # the float32 sum overflows
    assert features_module.count_non_finite(values) == 0
    values[2, 1] = np.nan
    assert features_module.count_non_finite(values) == 1


def test_other_float_types_are_converted(tmp_path, tiny_dump):
    tensors = {
        f"{n}/{p}": np.asarray(s.part(p))
        for n, s in tiny_dump.splits().items()
        for p in features_module.PARTS
    }
    tensors |= {"head/weight": tiny_dump.head.weight, "head/bias": tiny_dump.head.bias}
    tensors["train/features"] = tensors["train/features"].astype(np.float64)
    tensors["test/labels"] = tensors["test/labels"].astype(np.int32)
    path = tmp_path / "f64.safetensors"
    save_file(tensors, str(path))
    back = load_features(path)
    assert back.train.features.dtype == np.float32 and back.test.labels.dtype == np.int64
    joined = np.concatenate([c.features for c in back.train.chunks(5)])
    np.testing.assert_array_equal(joined, tiny_dump.train.features)


def test_truncated_file_is_one_clear_error(saved, tmp_path):
    _, path = saved
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(NcoodError, match="not a readable safetensors"):
        load_features(cut)


def test_split_part_names():
    split = Split(np.zeros((2, 3)), np.zeros((2, 1)), np.zeros(2, int), {"s": np.ones((2, 4))})
    assert split.part("layers/s").shape == (2, 4)
    with pytest.raises(KeyError):
        split.part("layers/missing")
