"""torchrun support: who am I, and the few collectives the engine needs.

Launched by ``torchrun --nproc_per_node=N -m ncood train …``, every process trains a shard of each
global batch under DistributedDataParallel; rank 0 alone writes the run directory. Without
torchrun the same code runs with ``world == 1`` and every collective is a no-op.
"""

from __future__ import annotations

import contextlib
import gc
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from ncood.errors import NcoodError


@dataclass(frozen=True)
class Cluster:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            dist.all_reduce(tensor)
        return tensor

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (any JSON-like object)."""
        if not self.distributed:
            return value
        box = [value if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def agree(self, action, *, share: bool = True) -> Any:
        """Run ``action`` on rank 0 only; a user error there stops every rank with its message.
        Its result reaches the other ranks when ``share`` (pickled in memory by
        torch.distributed; never written anywhere)."""
        value, outcome = None, ("ok", None)
        if self.main:
            try:
                value = action()
                outcome = ("ok", value if share else None)
            except NcoodError as exc:
                outcome = ("error", str(exc))
        status, shared = self.broadcast(outcome) if self.distributed else outcome
        if status == "error":
            raise NcoodError(shared)
        return value if self.main else shared

    def first(self, action) -> Any:
        """Run ``action`` on rank 0, then (if it succeeded) on every other rank: a download or
        a data check happens once, and its user error stops everyone with the same line."""
        if not self.distributed:
            return action()
        value = self.agree(action, share=False)
        return value if self.main else action()

    def gather_rows(self, rows: torch.Tensor, capacity: int) -> list:
        """Every rank's ``rows`` (at most ``capacity`` × width, on its device) as NumPy arrays
        of ``capacity`` rows each on rank 0, in rank order (padded with zeros); [] elsewhere."""
        if not self.distributed:
            return [rows.cpu().numpy()]
        padded = torch.zeros((capacity, rows.shape[1]), dtype=rows.dtype, device=rows.device)
        padded[: rows.shape[0]] = rows
        bucket = [torch.empty_like(padded) for _ in range(self.world)] if self.main else None
        dist.gather(padded, bucket, dst=0)
        return [t.cpu().numpy() for t in bucket] if self.main else []

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def start_cluster(device_name: str) -> Cluster:
    """Join the process group torchrun set up (NCCL on GPUs, gloo on CPUs); else a 1-process
    cluster."""
    if not launched_by_torchrun():
        return Cluster()
    if not dist.is_available():
        raise NcoodError("this PyTorch build has no torch.distributed: run without torchrun")
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    backend = "nccl" if use_cuda else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=timedelta(minutes=30))
    return Cluster(dist.get_rank(), dist.get_world_size(), local_rank, backend)


def stop_cluster(cluster: Cluster) -> None:
    """Leave the process group with no collective in flight. A gloo worker thread still
    finishing one (DDP's last buffer broadcast) when the interpreter exits needs the GIL to
    free its tensors and aborts the process ("terminate called without an active exception")
    after a run that succeeded; so every rank first waits for the others (a bounded wait: a
    rank that died already fails the run), then the group and what holds it (DDP's reducer,
    in reference cycles) are freed now rather than during the interpreter's exit."""
    if not (cluster.distributed and dist.is_initialized()):
        return
    if cluster.backend == "gloo":
        with contextlib.suppress(RuntimeError):  # a rank is gone: its failure is the run's
            dist.monitored_barrier(timeout=timedelta(seconds=60))
    dist.destroy_process_group()
    gc.collect()
