"""One epoch of training and one pass of evaluation, on a device-resident dataset.

The step loop never waits for the host: the epoch's input is built before it
(ncood.engine.batches.epoch_batches), losses and hit counts accumulate on the device, and the
only reads (:func:`train_epoch`'s two numbers) come after the last step. Under torchrun each
rank's loss is its shard's summed loss (the run's objective, ncood.engine.losses) divided by
the global batch size and multiplied by the number of ranks; DDP's gradient average then
gives exactly the gradient of the global batch mean, even when the last batch does not split
evenly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ncood.datasets import ImageSet, normalize
from ncood.engine.accel import Accel
from ncood.engine.batches import EpochBatches
from ncood.engine.distributed import Cluster
from ncood.engine.losses import Objective, cross_entropy_sum

PROGRESS_EVERY = 25  # steps between progress updates: a display costs host time, not GPU time


def train_steps(
    step_model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: EpochBatches,
    accel: Accel,
    world: int = 1,
    on_steps: Callable[[int], None] | None = None,
    objective: Objective = Objective(),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train over ``batches``; returns this rank's (summed loss, correct predictions), still
    on the device. ``on_steps(n)`` hears every :data:`PROGRESS_EVERY` steps and at the end.
    ``objective`` is the run's loss (ncood.engine.losses; cross-entropy by default)."""
    step_model.train()
    loss_sum = torch.zeros((), device=accel.device, dtype=torch.float64)
    correct = torch.zeros((), device=accel.device, dtype=torch.int64)
    unreported = 0
    mark_step = _cuda_graph_step_marker(accel)
    for inputs, labels, global_count in batches:
        mark_step()
        with accel.autocast():
            if objective.uses_encoder:
                outputs = step_model(inputs, with_encoded=True)
            else:
                outputs = step_model(inputs)
        summed, logits = objective.summed(outputs, labels)
        optimizer.zero_grad(set_to_none=True)
        (summed * (world / global_count)).backward()
        optimizer.step()
        loss_sum += summed.detach()
        correct += (logits.detach().argmax(1) == labels).sum()
        unreported += 1
        if on_steps is not None and unreported == PROGRESS_EVERY:
            on_steps(unreported)
            unreported = 0
    if on_steps is not None and unreported:
        on_steps(unreported)
    return loss_sum, correct


def _cuda_graph_step_marker(accel: Accel) -> Callable[[], None]:
    """With CUDA graphs, each step starts a new generation of graph outputs (the previous
    step's are overwritten); a no-op otherwise."""
    marker = getattr(torch.compiler, "cudagraph_mark_step_begin", None)
    if accel.cuda_graphs and marker is not None:
        return marker
    return lambda: None


def train_epoch(
    step_model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: EpochBatches,
    accel: Accel,
    cluster: Cluster = Cluster(),
    on_steps: Callable[[int], None] | None = None,
    objective: Objective = Objective(),
) -> tuple[float, int]:
    """:func:`train_steps`, then the epoch's totals over all ranks, read once."""
    loss_sum, correct = train_steps(
        step_model, optimizer, batches, accel, cluster.world, on_steps, objective
    )
    totals = cluster.all_reduce_sum(torch.stack([loss_sum, correct.double()]))
    return float(totals[0]), int(totals[1])  # the epoch's host reads, after the last step


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    images: ImageSet,
    mean: torch.Tensor,
    std: torch.Tensor,
    accel: Accel,
    cluster: Cluster = Cluster(),
    batch_size: int = 1024,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> tuple[float, float]:
    """Mean loss (the run's classification loss, ``loss``: summed over a batch; cross-entropy
    by default) and accuracy on ``images`` (no augmentation), sharded over ranks."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=accel.device, dtype=torch.float64)
    correct = torch.zeros((), device=accel.device, dtype=torch.int64)
    n = len(images)
    for block in range(0, n, batch_size * cluster.world):
        start = block + cluster.rank * batch_size
        x = images.images[start : min(start + batch_size, n)]
        if not x.shape[0]:
            continue
        y = images.labels[start : start + x.shape[0]].to(accel.device)
        with accel.autocast():
            logits = model(accel.layout(normalize(x.to(accel.device), mean, std)))
        loss_sum += (loss or cross_entropy_sum)(logits.float(), y)
        correct += (logits.argmax(1) == y).sum()
    totals = cluster.all_reduce_sum(torch.stack([loss_sum, correct.double()]))
    model.train(was_training)
    return float(totals[0]) / n, float(totals[1]) / n
