"""--tune: the choice is the argmax on the validation pair; test splits never reach a scorer."""

import numpy as np
import pytest

from ncood.errors import NcoodError
from ncood.host.scoring import Contribution
from ncood.ood.conventions import ood_metrics
from ncood.ood.tuning import (
    check_validation_set,
    grid_points,
    parse_tune,
    tune,
    validation_indices,
)
from ncood.store.features import FeatureDump, Head, Split

SEEN: list[object] = []  # every split a probe scorer scored


class AxisProbe:
    """−|x[:, axis]|: an ID sample sits near 0 on every axis."""

    def __init__(self, axis: int = 0, scale: float = 1.0) -> None:
        self.axis, self.scale = axis, scale

    def fit(self, train, head):
        self.centre = train.features[:, self.axis].mean()

    def score(self, split):
        SEEN.append(split)
        return -self.scale * np.abs(split.features[:, self.axis] - self.centre)


PROBE = Contribution("probe", AxisProbe, "test probe", "tests", "scorer")


def split_of(features, label=0):
    features = np.asarray(features, np.float32)
    labels = np.full(len(features), label) if label >= 0 else np.full(len(features), -1)
    return Split(features, features[:, :2], labels)


def probe_dump(seed=0):
    """OOD 'val' is off along axis 0, OOD 'test' along axis 2: the two sets disagree."""
    rng = np.random.default_rng(seed)
    train = rng.normal(0, 1, (400, 3))
    train_labels = np.repeat([0, 1], 200)
    test = rng.normal(0, 1, (100, 3))
    val = rng.normal(0, 1, (150, 3)) + [3.0, 0.0, 0.0]
    far = rng.normal(0, 1, (150, 3)) + [0.0, 0.0, 3.0]
    head = Head(np.eye(2, 3, dtype=np.float32), np.zeros(2, np.float32))
    train_split = Split(train.astype(np.float32), train[:, :2].astype(np.float32), train_labels)
    return FeatureDump(
        train_split, split_of(test), {"val": split_of(val, -1), "test": split_of(far, -1)}, head
    )


def test_parse_tune_and_grid_order():
    grids = parse_tune(["vim.dim=64,128,256", "knn.k=10,50", "knn.metric=a,b"])
    assert grids == {
        "vim": {"dim": ["64", "128", "256"]},
        "knn": {"k": ["10", "50"], "metric": ["a", "b"]},
    }
    assert grid_points(grids["knn"]) == [
        {"k": "10", "metric": "a"},
        {"k": "10", "metric": "b"},
        {"k": "50", "metric": "a"},
        {"k": "50", "metric": "b"},
    ]
    for bad in ["vim.dim", "vim=1,2", "vim.dim=", "vim.dim=1,1"]:
        with pytest.raises(NcoodError):
            parse_tune([bad])


def test_validation_split_is_seeded_per_class_and_disjoint():
    labels = np.repeat(np.arange(4), [50, 30, 20, 2])
    first = validation_indices(labels, 0.1, seed=3)
    assert np.array_equal(first, validation_indices(labels, 0.1, seed=3))
    assert not np.array_equal(first, validation_indices(labels, 0.1, seed=4))
    counts = np.bincount(labels[first], minlength=4)
    assert counts.tolist() == [5, 3, 2, 1]  # 10 % of each class, at least one, never all


def test_choice_is_the_validation_argmax_and_test_sets_never_enter_it():
    dump = probe_dump()
    SEEN.clear()
    settings, record = tune(dump, [PROBE], {"probe": {"axis": ["0", "1", "2"]}}, {}, "val")
    # The test OOD set is best separated on axis 2; the validation set on axis 0.
    assert settings == {"probe": {"axis": "0"}}
    assert record["scorers"]["probe"]["chosen"] == {"axis": 0}
    assert all(split is not dump.ood["test"] and split is not dump.test for split in SEEN)
    assert any(split is dump.ood["val"] for split in SEEN)
    # the recorded AUROCs are the validation pair's, and the choice is their argmax
    held = validation_indices(dump.train.labels, 0.1, 0)
    kept = np.setdiff1d(np.arange(len(dump.train)), held)
    aurocs = []
    for axis in range(3):
        centre = dump.train.features[kept, axis].mean()
        id_scores = -np.abs(dump.train.features[held, axis] - centre)
        ood_scores = -np.abs(dump.ood["val"].features[:, axis] - centre)
        aurocs.append(ood_metrics(id_scores, ood_scores)["auroc"])
    tried = record["scorers"]["probe"]["tried"]
    np.testing.assert_allclose([t["auroc"] for t in tried], aurocs, atol=1e-12)
    assert int(np.argmax(aurocs)) == record["scorers"]["probe"]["chosen"]["axis"]
    # what the choice would have been on the test set: a different axis (the test can fail)
    test_aurocs = []
    for axis in range(3):
        centre = dump.train.features[kept, axis].mean()
        test_aurocs.append(
            ood_metrics(
                -np.abs(dump.train.features[held, axis] - centre),
                -np.abs(dump.ood["test"].features[:, axis] - centre),
            )["auroc"]
        )
    assert int(np.argmax(test_aurocs)) != 0
    assert record["validation"]["id_size"] == held.size and record["ood"] == "val"


def test_refusals():
    with pytest.raises(NcoodError, match="test OOD sets"):
        check_validation_set("test", ["val", "test"], ["val", "test"])
    with pytest.raises(NcoodError, match="no such OOD set"):
        check_validation_set("nope", ["val", "test"], ["test"])
    check_validation_set("val", ["val", "test"], ["test"])
    dump = probe_dump()
    with pytest.raises(NcoodError, match="not among the selected"):
        tune(dump, [PROBE], {"other": {"k": ["1"]}}, {}, "val")
    with pytest.raises(NcoodError, match="both with --set"):
        tune(dump, [PROBE], {"probe": {"axis": ["0"]}}, {"probe": {"axis": "1"}}, "val")


def test_a_failing_grid_point_leaves_the_others():
    dump = probe_dump()
    settings, record = tune(dump, [PROBE], {"probe": {"axis": ["7", "1"]}}, {}, "val")
    tried = record["scorers"]["probe"]["tried"]
    assert "error" in tried[0] and settings["probe"]["axis"] == "1"
    with pytest.raises(NcoodError, match="every grid point failed"):
        tune(dump, [PROBE], {"probe": {"axis": ["7", "8"]}}, {}, "val")
