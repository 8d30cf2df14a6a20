"""A run killed with SIGKILL mid-training and resumed ends bit-for-bit where an uninterrupted
run ends (CPU, one thread, same settings), and a second writer is refused while the first lives."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from typer.testing import CliRunner

from ncood.cli import app

runner = CliRunner()
CONFIG = [
    "--preset",
    "demo-standard",
    "--epochs",
    "4",
    "--width",
    "4",
    "--train-subset",
    "384",
    "--checkpoint-every",
    "2",
    "--quiet",
]
# One thread: the same floating-point summation order in every process.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NCOOD_LOAD_PLUGINS": ""}


def ncood_train(*args) -> list[str]:
    return [sys.executable, "-m", "ncood", "train", *map(str, args)]


def state_epoch(run: Path) -> int:
    try:
        return json.loads((run / "state" / "state.json").read_text())["epoch"]
    except FileNotFoundError:
        return 0


def wait_for(condition, process: subprocess.Popen, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"training ended before {what}: {process.stderr.read()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def without_timings(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in history]


def test_sigkill_mid_training_then_resume_gives_identical_weights(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    reference = subprocess.Popen(
        ncood_train(*CONFIG, "--out", straight), env=ENV, stderr=subprocess.PIPE, text=True
    )
    victim = subprocess.Popen(
        ncood_train(*CONFIG, "--out", killed), env=ENV, stderr=subprocess.PIPE, text=True
    )

    # While the victim trains, a second writer of its folder is refused (flock held).
    wait_for(lambda: (killed / "manifest.json").exists(), victim, "the manifest")
    second = runner.invoke(app, ["train", "--resume", str(killed)])
    assert second.exit_code == 1
    assert "is being written by another ncood process (pid" in second.output
    assert str(victim.pid) in second.output

    # Kill it as soon as epoch 2's state is complete, i.e. during epoch 3.
    wait_for(lambda: state_epoch(killed) >= 2, victim, "epoch 2's state")
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    killed_at = state_epoch(killed)
    assert killed_at in (2, 3), killed_at  # not finished: there is something left to resume
    assert json.loads((killed / "manifest.json").read_text())["status"] == "running"
    assert not (killed / "checkpoints" / "epoch-0004.safetensors").exists()

    resumed = subprocess.run(
        ncood_train("--resume", killed, "--quiet"), env=ENV, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed and completed" in resumed.stdout
    assert reference.wait() == 0, reference.stderr.read()

    for kind in ("checkpoints", "features"):
        for epoch in (2, 4):
            name = f"{kind}/epoch-{epoch:04d}.safetensors"
            ours, theirs = load_file(str(killed / name)), load_file(str(straight / name))
            assert ours.keys() == theirs.keys()
            for key in ours:
                assert np.array_equal(ours[key], theirs[key]), (name, key)
    history = json.loads((killed / "history.json").read_text())
    assert without_timings(history) == without_timings(
        json.loads((straight / "history.json").read_text())
    )
    manifest = json.loads((killed / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["resumes"][0]["from_epoch"] == killed_at
    assert sorted(p.name for p in (killed / "state").iterdir()) == [
        "epoch-0004.safetensors",
        "state.json",
    ]

    again = runner.invoke(app, ["train", "--resume", str(straight)])
    assert again.exit_code == 0 and "already complete" in again.output
