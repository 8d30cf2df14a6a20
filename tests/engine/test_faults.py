"""Faults during training: each one is a single clear line, and the run stays resumable."""

from __future__ import annotations

import errno
import json

import pytest
from cli_helpers import one_line_error, runner, train

from ncood.cli import app
from ncood.engine.lock import RunLock

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def state_epoch(run) -> int:
    return json.loads((run / "state" / "state.json").read_text())["epoch"]


def test_disk_full_is_one_line_and_the_run_resumes(tmp_path, monkeypatch):
    import ncood.engine.train as engine

    real_save = engine.save_weights

    def full_at_epoch_2(model, path, epoch):
        if epoch == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_save(model, path, epoch)

    monkeypatch.setattr(engine, "save_weights", full_at_epoch_2)
    run = tmp_path / "run"
    result = train("--epochs", "3", "--checkpoint-every", "1", "--out", str(run))
    one_line_error(result, "no space left on device", "epoch-0002", f"--resume {run}")
    assert state_epoch(run) == 1  # the last complete epoch is kept
    assert json.loads((run / "manifest.json").read_text())["status"] == "running"

    monkeypatch.setattr(engine, "save_weights", real_save)  # space freed
    result = runner.invoke(app, ["train", "--resume", str(run), "--quiet"])
    assert result.exit_code == 0, result.output
    assert (run / "checkpoints" / "epoch-0003.safetensors").is_file()
    assert [h["epoch"] for h in json.loads((run / "history.json").read_text())] == [1, 2, 3]


def test_disk_full_in_the_background_state_writer(tmp_path, monkeypatch):
    import ncood.engine.state as state

    def full(run, snapshot):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(state, "write_snapshot", full)
    result = train("--epochs", "2", "--out", str(tmp_path / "run"))
    one_line_error(result, "no space left on device", str(tmp_path / "run"))


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    run = tmp_path / "run"
    # lr × 1e12 from epoch 2 on: the loss overflows during epoch 2
    result = train(
        "--epochs",
        "3",
        "--checkpoint-every",
        "1",
        "--schedule",
        "multistep",
        "--milestones",
        "1",
        "--gamma",
        "1e12",
        "--out",
        str(run),
    )
    line = one_line_error(result, "training diverged at epoch 2", "keeping the state of epoch 1")
    assert "checkpoints up to epoch 1" in line and "Lower --lr" in line
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "stopped" and "diverged" in manifest["error"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch-0001.safetensors"]
    assert sorted(p.name for p in (run / "features").iterdir()) == ["epoch-0001.safetensors"]
    assert state_epoch(run) == 1
    assert [h["epoch"] for h in json.loads((run / "history.json").read_text())] == [1]


def test_resume_needs_a_run(tmp_path):
    one_line_error(
        runner.invoke(app, ["train", "--resume", str(tmp_path / "missing")]),
        "no such run directory",
    )
    (tmp_path / "folder").mkdir()
    one_line_error(
        runner.invoke(app, ["train", "--resume", str(tmp_path / "folder")]),
        "is not an ncood run (no manifest.json)",
    )
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text('{"format": "something-else"}')
    one_line_error(
        runner.invoke(app, ["train", "--resume", str(tmp_path / "bad")]),
        "is not an ncood run manifest",
    )


def test_resume_keeps_the_stored_configuration(tmp_path):
    one_line_error(
        runner.invoke(app, ["train", "--resume", str(tmp_path), "--epochs", "9", "--lr", "1"]),
        "--resume continues the run with its stored configuration; drop --epochs, --lr",
    )


def test_resume_refuses_changed_data(tmp_path):
    run = tmp_path / "run"
    assert train("--epochs", "2", "--out", str(run)).exit_code == 0
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["status"] = "running"
    manifest["dataset"]["train_size"] = 999
    (run / "manifest.json").write_text(json.dumps(manifest))
    one_line_error(
        runner.invoke(app, ["train", "--resume", str(run), "--quiet"]),
        "the data changed since the run started (train_size: 999 then, 128 now)",
    )


def test_a_second_writer_is_refused_and_changes_nothing(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "keep.txt").write_text("untouched")
    with RunLock(run / ".ncood.lock"):
        one_line_error(
            train("--epochs", "1", "--out", str(run), "--force"),
            "is being written by another ncood process",
            "wait for it to finish, or use another --out",
        )
    assert sorted(p.name for p in run.iterdir()) == [".ncood.lock", "keep.txt"]
    # the lock is free again: the same command now works
    assert train("--epochs", "1", "--out", str(run), "--force").exit_code == 0
    assert (run / "checkpoints" / "epoch-0001.safetensors").is_file()
