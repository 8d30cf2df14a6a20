"""``torchrun -m ncood extract``: each process takes whole batches of every split, rank 0 writes.

The batches are those one process would form (``batch_size`` images from the start of the
split), dealt in turn: batch ``k`` goes to rank ``k mod world``. So every image meets the model
in the same batch as in a single process, and the features file rank 0 writes is bit for bit a
single process's (on the CPU; GPUs may pick other kernels per process). At each step every rank
runs one batch and rank 0 gathers them (ncood.engine.distributed), so memory stays a batch per
rank whatever the split's size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ncood.engine.distributed import Cluster


@dataclass(frozen=True)
class Shards:
    cluster: Cluster
    batch_size: int
    totals: dict[str, int]  # split → the whole split's size

    def index(self, count: int) -> torch.Tensor:
        """The rows of a ``count``-image split that this rank runs: its batches, in order."""
        starts = range(self.cluster.rank * self.batch_size, count, self.batch_size * self.world)
        rows = [torch.arange(s, min(s + self.batch_size, count)) for s in starts]
        return torch.cat(rows) if rows else torch.zeros(0, dtype=torch.int64)

    @property
    def world(self) -> int:
        return self.cluster.world

    def steps(self, split: str) -> int:
        """Rounds of one batch per rank that cover ``split``."""
        batches = -(-self.totals[split] // self.batch_size)
        return -(-batches // self.world)

    def rows(self, split: str, step: int, rank: int) -> tuple[int, int]:
        """(first row, count) of the batch ``rank`` runs at ``step``; count 0 past the end."""
        first = (step * self.world + rank) * self.batch_size
        return first, max(0, min(self.batch_size, self.totals[split] - first))
