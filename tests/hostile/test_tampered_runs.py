"""A run folder changed after it was written: a features file with a flipped byte (its
mtime kept or not) or cut short, a manifest or resume state edited into the wrong shape, a
deleted state/, a checkpoint with a flipped byte. Each is refused in one line, with nothing
in the run changed; ``--verify`` finds what the size and mtime do not show.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from cli_helpers import runner
from hostile_helpers import analyze, copied, files_of, one_line_error, snapshot, unfinished

from ncood.cli import app

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- features files --------------------------------------------------------------------------------


def flip_a_bit(path: Path, keep_mtime: bool = False) -> None:
    info = path.stat()
    with open(path, "r+b") as handle:
        handle.seek(info.st_size - 100)
        byte = handle.read(1)
        handle.seek(info.st_size - 100)
        handle.write(bytes([byte[0] ^ 0x10]))
    if keep_mtime:
        os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


def test_a_bit_flipped_features_file_is_refused(run_copy):
    features = sorted((run_copy / "features").iterdir())[-1]
    flip_a_bit(features)
    before = files_of(run_copy)
    one_line_error(analyze(run_copy), features.name, "does not match the run's manifest")
    assert files_of(run_copy) == before
    report = runner.invoke(app, ["report", str(run_copy), "--no-pdf", "--out", "unused"])
    one_line_error(report, "does not match the run's manifest")


def test_a_flip_that_kept_the_mtime_is_found_when_asked(run_copy):
    features = sorted((run_copy / "features").iterdir())[-1]
    flip_a_bit(features, keep_mtime=True)
    one_line_error(analyze(run_copy, "--verify"), "sha256 differs")


def test_a_truncated_features_file_is_refused_by_its_size(run_copy):
    features = sorted((run_copy / "features").iterdir())[-1]
    with open(features, "r+b") as handle:
        handle.truncate(features.stat().st_size - 8)
    one_line_error(analyze(run_copy), "size")


# -- manifests and the resume state ----------------------------------------------------------------


@pytest.mark.parametrize(
    "manifest",
    [
        [],
        "a string",
        {"format": "ncood-run", "config": []},
        {"format": "ncood-run", "dataset": {"name": 3}},
    ],
)
def test_a_manifest_of_the_wrong_shape_is_one_line(run_copy, manifest):
    (run_copy / "manifest.json").write_text(json.dumps(manifest))
    before = files_of(run_copy)
    one_line_error(analyze(run_copy))
    one_line_error(runner.invoke(app, ["report", str(run_copy), "--no-pdf", "--out", "unused"]))
    assert files_of(run_copy) == before


MANIFEST_TAMPERS = {
    "a list": lambda m: [m],
    "config a list": lambda m: {**m, "config": []},
    "epochs a string": lambda m: {**m, "config": {**m["config"], "epochs": "many"}},
    "lr NaN": lambda m: {**m, "config": {**m["config"], "lr": float("nan")}},
    "config without epochs": lambda m: {
        **m,
        "config": {k: v for k, v in m["config"].items() if k != "epochs"},
    },
    "dataset sizes strings": lambda m: {**m, "dataset": {**m["dataset"], "train_size": "128"}},
}


@pytest.mark.slow
@pytest.mark.parametrize("tamper", sorted(MANIFEST_TAMPERS))
def test_a_tampered_manifest_on_resume_is_one_line(small_run, tmp_path, tamper):
    run = unfinished(small_run, tmp_path / "run")
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps(MANIFEST_TAMPERS[tamper](manifest)))
    before = snapshot(run)
    one_line_error(runner.invoke(app, ["train", "--resume", str(run), "--quiet"]))
    assert snapshot(run) == before


STATE_TAMPERS = {
    "a list": lambda s: [s],
    "tensors elsewhere": lambda s: {**s, "tensors": "../manifest.json"},
    "epoch a string": lambda s: {**s, "epoch": "2"},
    "no optimizer": lambda s: {k: v for k, v in s.items() if k != "optimizer"},
    "history a string": lambda s: {**s, "history": "none"},
    "param groups empty": lambda s: {**s, "optimizer": {**s["optimizer"], "param_groups": []}},
    "python rng wrong": lambda s: {**s, "rng": {**s["rng"], "python": [3, [1, 2], None]}},
}


@pytest.mark.slow
@pytest.mark.parametrize("tamper", sorted(STATE_TAMPERS))
def test_a_tampered_resume_state_is_one_line(small_run, tmp_path, tamper):
    run = unfinished(small_run, tmp_path / "run")
    state = json.loads((run / "state" / "state.json").read_text())
    (run / "state" / "state.json").write_text(json.dumps(STATE_TAMPERS[tamper](state)))
    before = snapshot(run)
    one_line_error(runner.invoke(app, ["train", "--resume", str(run), "--quiet"]))
    assert snapshot(run) == before


@pytest.mark.slow
def test_resume_without_state_after_finished_epochs_is_refused(small_run, tmp_path):
    run = unfinished(small_run, tmp_path / "run")
    shutil.rmtree(run / "state")
    before = snapshot(run)
    one_line_error(
        runner.invoke(app, ["train", "--resume", str(run), "--quiet"]),
        "state",
        "finished 2 epoch(s)",
    )
    assert snapshot(run) == before


# -- checkpoints, and --verify ---------------------------------------------------------------------


def flip_a_byte_keeping_size_and_mtime(path: Path) -> None:
    info = path.stat()
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01  # in the last tensor's data: the file still parses
    path.write_bytes(bytes(data))
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert path.stat().st_size == info.st_size and path.stat().st_mtime_ns == info.st_mtime_ns


def test_verify_catches_a_flipped_byte_in_a_checkpoint(trained, tmp_path):
    run = copied(trained, tmp_path / "run")
    epoch = run.feature_epochs()[-1]
    flip_a_byte_keeping_size_and_mtime(run.checkpoint(epoch))
    args = ["analyze", str(run.root), "--plugins", "odin", "--quiet"]
    one_line_error(runner.invoke(app, [*args, "--verify"]), run.checkpoint(epoch).name)
    assert not (run.root / "analysis").exists()


def test_verify_passes_intact_checkpoints(trained, tmp_path):
    from ncood.extraction.rerun import check_rebuildable

    run = copied(trained, tmp_path / "run")
    for epoch in run.feature_epochs():
        check_rebuildable(run, epoch, verify=True)
