"""torchrun on the CPU (gloo, 2 processes): the global-batch BatchNorm is exact, and a 2-process
run matches a 1-process run on the same global batch.

Tolerance, and why: the two runs add the same numbers in a different order, so they differ by
float32 rounding (~1e-7), which training then amplifies — ResNet BatchNorm layers with
near-constant channels multiply such noise by up to 1/sqrt(eps) ≈ 300 per step. After 2 SGD
steps, measured: 2 processes vs 1 differ by < 1e-4 on every weight, the same order as 1 process
with 1 thread vs 2 threads; with per-rank BatchNorm (--no-sync-batchnorm) they differ by ~4e-2.
The test allows 1e-3.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.numpy import load_file
from torch import nn

from ncood.engine.presets import resolve_preset
from ncood.engine.syncbn import GlobalBatchNorm2d
from ncood.store.features import load_features

TOLERANCE = 1e-3


def _batchnorm_worker(rank: int, world: int, init_file: str, out_dir: str, sizes) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(0)
    x = torch.randn(sum(sizes), 3, 5, 4, dtype=torch.float64) * 3 + 1
    upstream = torch.randn_like(x)
    bn = GlobalBatchNorm2d(3).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, 1.5, -2.0]))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    start = sum(sizes[:rank])
    shard = x[start : start + sizes[rank]].clone().requires_grad_(True)
    out = bn(shard)
    (out * upstream[start : start + sizes[rank]]).sum().backward()
    np.savez(
        os.path.join(out_dir, f"rank{rank}.npz"),
        out=out.detach().numpy(),
        grad_x=shard.grad.numpy(),
        grad_weight=bn.weight.grad.numpy(),
        grad_bias=bn.bias.grad.numpy(),
        running_mean=bn.running_mean.numpy(),
        running_var=bn.running_var.numpy(),
    )
    dist.destroy_process_group()


@pytest.mark.parametrize("sizes", [(5, 3), (4, 0)], ids=["uneven", "empty-shard"])
def test_global_batchnorm_equals_batchnorm_on_the_whole_batch(tmp_path, sizes):
    mp.spawn(
        _batchnorm_worker,
        args=(2, str(tmp_path / "init"), str(tmp_path), sizes),
        nprocs=2,
        join=True,
    )
    torch.manual_seed(0)
    x = (torch.randn(sum(sizes), 3, 5, 4, dtype=torch.float64) * 3 + 1).requires_grad_(True)
    upstream = torch.randn_like(x)
    bn = nn.BatchNorm2d(3).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, 1.5, -2.0]))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    out = bn(x)
    (out * upstream).sum().backward()
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in range(2)]
    assert np.allclose(np.concatenate([r["out"] for r in ranks]), out.detach().numpy(), atol=1e-12)
    assert np.allclose(np.concatenate([r["grad_x"] for r in ranks]), x.grad.numpy(), atol=1e-12)
    # DDP averages parameter gradients over ranks; the engine scales each loss by the world size
    grad_weight = sum(r["grad_weight"] for r in ranks)
    assert np.allclose(grad_weight, bn.weight.grad.numpy(), atol=1e-12)
    assert np.allclose(sum(r["grad_bias"] for r in ranks), bn.bias.grad.numpy(), atol=1e-12)
    for r in ranks:  # the same running statistics on every rank, as one process computes them
        assert np.allclose(r["running_mean"], bn.running_mean.numpy(), atol=1e-12)
        assert np.allclose(r["running_var"], bn.running_var.numpy(), atol=1e-12)


ARGS = [
    "--preset",
    "demo-standard",
    "--dataset",
    "synthetic",
    "--ood",
    "noise",
    "--train-subset",
    "128",
    "--epochs",
    "1",
    "--width",
    "4",
    "--quiet",
]


def test_torchrun_two_processes_match_one(tmp_path):
    from ncood.engine.train import train

    distributed = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NCOOD_LOAD_PLUGINS": ""}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run(
        [*launch, "-m", "ncood", "train", *ARGS, "--out", str(distributed)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("run written to") == 1  # rank 0 alone speaks

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = train(
            resolve_preset(
                "demo-standard",
                dataset="synthetic",
                ood=["noise"],
                train_subset=128,
                epochs=1,
                width=4,
            ),
            tmp_path / "single",
            show_progress=False,
        )
    finally:
        torch.set_num_threads(threads)

    manifest = json.loads((distributed / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["distributed"] == {"world_size": 2, "backend": "gloo", "sync_batchnorm": True}
    ours = load_file(str(distributed / "checkpoints" / "epoch-0001.safetensors"))
    theirs = load_file(str(single.checkpoint(1)))
    assert ours.keys() == theirs.keys()
    worst = max(float(np.abs(ours[k].astype(np.float64) - theirs[k]).max()) for k in ours)
    assert worst < TOLERANCE, worst

    # Sharded extraction, gathered on rank 0: same rows, in the same order, as one process.
    ddp_dump, one_dump = (
        load_features(distributed / "features" / "epoch-0001.safetensors"),
        (load_features(single.features(1))),
    )
    for name, split in one_dump.splits().items():
        other = ddp_dump.splits()[name]
        assert np.array_equal(other.labels, split.labels), name
        assert np.abs(other.features - split.features).max() < TOLERANCE, name
        assert np.abs(other.logits - split.logits).max() < TOLERANCE, name
    history = json.loads((distributed / "history.json").read_text())[0]
    reference = single.history()[0]
    assert abs(history["train_loss"] - reference["train_loss"]) < TOLERANCE
    assert history["test_acc"] == pytest.approx(reference["test_acc"], abs=0.01)
