"""The epoch plan: sample order, crop offsets and flips, drawn once per epoch, then sliced.

Everything random about an epoch is drawn up front from a generator seeded by (seed, epoch),
for the whole training set, on the CPU, and moved to the device in one copy. A global batch is a
slice of that plan; under torchrun each rank takes every N-th position of the slice. So the
augmentation a sample receives depends only on (seed, epoch, position), never on the number of
processes, and a resumed run replays exactly what an uninterrupted one would have done.

The training loop does not run the augmentation per step: :func:`epoch_batches` builds the
whole epoch's input tensor once (this rank's images, in step order, cropped, flipped,
normalized, in the network's memory layout) with a few large kernels, and each step takes a
slice of it, a view with no kernel at all. The numbers are those of the per-step path
(:func:`training_batches` then ``normalize``), bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ncood.datasets import normalize

BUILD_CHUNK = 4096  # images augmented at a time while building an epoch: bounded temporaries


@dataclass(frozen=True)
class EpochPlan:
    order: torch.Tensor  # N int64: dataset index at each position
    dy: torch.Tensor  # N int64: crop offset (rows) in the padded image
    dx: torch.Tensor  # N int64: crop offset (columns)
    flips: torch.Tensor  # N bool: horizontal flip

    def __len__(self) -> int:
        return int(self.order.shape[0])

    def head(self, count: int) -> EpochPlan:
        """The first ``count`` positions (an epoch that drops a tail, a short benchmark)."""
        return EpochPlan(self.order[:count], self.dy[:count], self.dx[:count], self.flips[:count])


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def plan_epoch(
    size: int, seed: int, epoch: int, padding: int, flip: bool, device: torch.device
) -> EpochPlan:
    generator = epoch_generator(seed, epoch)
    order = torch.randperm(size, generator=generator)
    dy = torch.randint(0, 2 * padding + 1, (size,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (size,), generator=generator)
    flips = torch.rand(size, generator=generator) < 0.5
    if not flip:
        flips = torch.zeros(size, dtype=torch.bool)
    return EpochPlan(*(t.to(device, non_blocking=True) for t in (order, dy, dx, flips)))


def crop_flip(
    batch: torch.Tensor,
    dy: torch.Tensor,
    dx: torch.Tensor,
    flips: torch.Tensor,
    padding: int,
) -> torch.Tensor:
    """Zero-pad, crop at (dy, dx), then flip where asked: torchvision's RandomCrop(padding) +
    RandomHorizontalFlip, for a whole batch in one gather, on whatever device holds it."""
    n, channels, height, width = batch.shape
    padded = F.pad(batch, (padding,) * 4) if padding else batch
    padded_width = width + 2 * padding
    rows = dy[:, None] + torch.arange(height, device=batch.device)  # n×h
    columns = torch.arange(width, device=batch.device).expand(n, width)
    columns = torch.where(flips[:, None], width - 1 - columns, columns) + dx[:, None]  # n×w
    flat = (rows[:, :, None] * padded_width + columns[:, None, :]).reshape(n, 1, height * width)
    pixels = padded.reshape(n, channels, -1).gather(2, flat.expand(n, channels, height * width))
    return pixels.reshape(n, channels, height, width)


def global_batches(size: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, stop) positions of each global batch; the last one may be short."""
    return [(start, min(start + batch_size, size)) for start in range(0, size, batch_size)]


def local_positions(
    start: int, stop: int, rank: int, world: int, device: torch.device
) -> torch.Tensor:
    """This rank's share of a global batch: every ``world``-th position (DistributedSampler's
    interleaving, applied per batch so the union over ranks is exactly the global batch)."""
    return torch.arange(start + rank, stop, world, device=device)


def training_batches(
    images: torch.Tensor,
    labels: torch.Tensor,
    plan: EpochPlan,
    batch_size: int,
    padding: int,
    *,
    rank: int = 0,
    world: int = 1,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
    """Augmented uint8 batches for this rank, with the size of the global batch they belong to."""
    for start, stop in global_batches(len(plan), batch_size):
        positions = local_positions(start, stop, rank, world, images.device)
        index = plan.order[positions]
        batch = crop_flip(
            images[index], plan.dy[positions], plan.dx[positions], plan.flips[positions], padding
        )
        yield batch, labels[index], stop - start


@dataclass(frozen=True)
class EpochBatches:
    """One epoch of this rank's training input, ready for the network, and its steps."""

    inputs: torch.Tensor  # n×3×H×W float32, normalized, in the network's memory layout
    labels: torch.Tensor  # n int64
    steps: list[tuple[int, int, int]]  # (first, stop) rows in ``inputs``, global batch size

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        for first, stop, global_count in self.steps:
            yield self.inputs[first:stop], self.labels[first:stop], global_count


def epoch_batches(
    images: torch.Tensor,
    labels: torch.Tensor,
    plan: EpochPlan,
    batch_size: int,
    padding: int,
    mean: torch.Tensor,
    std: torch.Tensor,
    *,
    channels_last: bool = False,
    rank: int = 0,
    world: int = 1,
) -> EpochBatches:
    """Build the epoch's input once; under torchrun each rank builds only its own share."""
    steps: list[tuple[int, int, int]] = []
    shares: list[torch.Tensor] = []
    first = 0
    for start, stop in global_batches(len(plan), batch_size):
        share = local_positions(start, stop, rank, world, images.device)
        shares.append(share)
        steps.append((first, first + share.shape[0], stop - start))
        first += share.shape[0]
    positions = torch.cat(shares) if shares else torch.zeros(0, dtype=torch.int64)
    _, channels, height, width = images.shape
    layout = torch.channels_last if channels_last else torch.contiguous_format
    inputs = torch.empty(
        (first, channels, height, width), device=images.device, memory_format=layout
    )
    for begin in range(0, first, BUILD_CHUNK):
        chunk = positions[begin : begin + BUILD_CHUNK]
        index = plan.order[chunk]
        batch = crop_flip(images[index], plan.dy[chunk], plan.dx[chunk], plan.flips[chunk], padding)
        inputs[begin : begin + chunk.shape[0]] = normalize(batch, mean, std)
    return EpochBatches(inputs, labels[plan.order[positions]], steps)
