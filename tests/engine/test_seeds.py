"""``ncood train --seeds``: one ordinary run per seed in OUT/seed-<s>/, sequential, or split
over torchrun's processes (rank r takes seeds r, r+N, …) without any process group."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from typer.testing import CliRunner

from ncood.cli import app

runner = CliRunner()
TINY = [
    "--preset",
    "demo-standard",
    "--epochs",
    "1",
    "--width",
    "4",
    "--train-subset",
    "64",
    "--checkpoint-every",
    "1",
    "--device",
    "cpu",
    "--quiet",
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def manifest(run) -> dict:
    return json.loads((run / "manifest.json").read_text())


def test_one_run_per_seed_then_resume_the_folder(tmp_path):
    out = tmp_path / "runs"
    result = runner.invoke(app, ["train", *TINY, "--seeds", "0,1,2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["seed-0", "seed-1", "seed-2"]
    weights = []
    for seed in (0, 1, 2):
        run = out / f"seed-{seed}"
        recorded = manifest(run)
        assert recorded["seed"] == seed and recorded["config"]["seed"] == seed
        assert recorded["status"] == "complete"
        weights.append(load_file(str(run / "checkpoints" / "epoch-0001.safetensors")))
        assert f"run written to {run}" in result.output
    assert not np.array_equal(weights[0]["fc.weight"], weights[1]["fc.weight"])

    again = runner.invoke(app, ["train", "--resume", str(out), "--quiet"])
    assert again.exit_code == 0, again.output
    assert again.output.count("is already complete") == 3


def test_torchrun_rank_takes_every_nth_seed(tmp_path, monkeypatch):
    """Rank 1 of 2 trains seeds 1, 3 of 0..3, as an ordinary run: no process group."""
    for name, value in (("WORLD_SIZE", "2"), ("RANK", "1"), ("LOCAL_RANK", "1")):
        monkeypatch.setenv(name, value)
    out = tmp_path / "runs"
    result = runner.invoke(
        app,
        [
            "train",
            *TINY,
            "--seeds",
            "0,1,2,3",
            "--out",
            str(out),
            "--epochs",
            "1",
            "--checkpoint-every",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["seed-1", "seed-3"]
    assert manifest(out / "seed-3")["distributed"]["world_size"] == 1
    assert not torch.distributed.is_initialized()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seeds", "0,1", "--seed", "3"], "give --seed or --seeds, not both"),
        (["--seeds", "1,1"], "--seeds lists a seed twice"),
    ],
)
def test_bad_seeds_are_one_line(tmp_path, args, message):
    result = runner.invoke(app, ["train", *TINY, *args, "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and message in result.output
    assert not (tmp_path / "r").exists()
