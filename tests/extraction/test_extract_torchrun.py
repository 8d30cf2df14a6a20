"""``torchrun --nproc_per_node=2 -m ncood extract`` on the CPU (gloo) writes the features file a
single process writes, byte for byte: every image meets the model in the same batch, and rank 0
writes what it gathers at the rows one process would (ncood.extraction.sharding)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from ncood.extraction.sharding import Shards
from ncood.store.run import RunDir


def test_each_rank_takes_whole_batches_in_turn():
    from ncood.engine.distributed import Cluster

    totals = {"train": 21, "ood/x": 3}
    ranks = [Shards(Cluster(rank, 2), 4, totals) for rank in range(2)]
    # batches of 4: [0-3] [4-7] [8-11] [12-15] [16-19] [20]; rank 0 takes 1st, 3rd, 5th
    assert ranks[0].index(21).tolist() == [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19]
    assert ranks[1].index(21).tolist() == [4, 5, 6, 7, 12, 13, 14, 15, 20]
    assert ranks[1].index(3).tolist() == []  # one batch in all: rank 1 has none
    assert [r.steps("train") for r in ranks] == [3, 3]
    assert ranks[1].rows("train", 2, 1) == (20, 1) and ranks[1].rows("ood/x", 0, 1) == (4, 0)
    every = sorted(torch.cat([r.index(21) for r in ranks]).tolist())
    assert every == list(range(21))


def _extract(command: list[str], out, weights) -> subprocess.CompletedProcess:
    args = ["-m", "ncood", "extract", "--model", "resnet18-cifar", "--model-arg", "width=8"]
    args += ["--weights", weights, "--dataset", "synthetic", "--ood", "photos,noise"]
    args += ["--limit", "37", "--batch-size", "8", "--device", "cpu", "--out", str(out), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NCOOD_LOAD_PLUGINS": ""}
    return subprocess.run([*command, *args], env=env, capture_output=True, text=True, timeout=300)


def test_two_processes_write_the_single_process_file(tmp_path):
    from ncood.engine.resnet import ResNet18

    torch.manual_seed(0)
    model = ResNet18(10, width=8)
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.running_var.uniform_(0.5, 1.5)  # eval-mode statistics that differ from training's
    weights = tmp_path / "resnet18.pth"
    torch.save(model.state_dict(), weights)
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    # 37 images in batches of 8: 5 batches, 3 on rank 0 and 2 on rank 1, the last one short
    done = _extract(launch, tmp_path / "two" / "run", weights)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("run written to") == 1  # rank 0 alone speaks
    single = _extract([sys.executable], tmp_path / "one" / "run", weights)
    assert single.returncode == 0, single.stderr[-3000:]

    for folder in ("one", "two"):
        manifest = json.loads((tmp_path / folder / "run" / "manifest.json").read_text())
        assert manifest["status"] == "complete"
        assert manifest["dataset"]["train_size"] == 37
    one = RunDir.open(tmp_path / "one" / "run").features(1).read_bytes()
    two = RunDir.open(tmp_path / "two" / "run").features(1).read_bytes()
    assert one == two
    evaluations = [
        json.loads((tmp_path / f / "run" / "manifest.json").read_text())["evaluation"]
        for f in ("one", "two")
    ]
    assert evaluations[0] == evaluations[1]  # accuracies gathered on rank 0 too
