"""One epoch of training and one pass of evaluation, on a GPU-resident uint8 dataset.

No ``.item()`` inside the loops: losses and hit counts accumulate on the device and are read
once per epoch, so the GPU never waits for the host. Under torchrun each rank's loss is its
shard's summed cross-entropy divided by the global batch size and multiplied by the number of
ranks; DDP's gradient average then gives exactly the gradient of the global batch mean, even
when the last batch does not split evenly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ncood.datasets import ImageSet, normalise
from ncood.engine.accel import Accel
from ncood.engine.batches import EpochPlan, training_batches
from ncood.engine.distributed import Cluster


def train_epoch(
    step_model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    train_set: ImageSet,
    plan: EpochPlan,
    batch_size: int,
    padding: int,
    mean: torch.Tensor,
    std: torch.Tensor,
    accel: Accel,
    cluster: Cluster = Cluster(),
    on_step: Callable[[], None] | None = None,
) -> tuple[float, int]:
    """Train over ``plan``; returns (summed loss, correct predictions) over all ranks."""
    step_model.train()
    loss_sum = torch.zeros((), device=accel.device, dtype=torch.float64)
    correct = torch.zeros((), device=accel.device, dtype=torch.int64)
    batches = training_batches(
        train_set.images,
        train_set.labels,
        plan,
        batch_size,
        padding,
        rank=cluster.rank,
        world=cluster.world,
    )
    for batch, labels, global_count in batches:
        inputs = accel.layout(normalise(batch, mean, std))
        with accel.autocast():
            logits = step_model(inputs)
        summed = F.cross_entropy(logits.float(), labels, reduction="sum")
        optimizer.zero_grad(set_to_none=True)
        (summed * (cluster.world / global_count)).backward()
        optimizer.step()
        loss_sum += summed.detach()
        correct += (logits.detach().argmax(1) == labels).sum()
        if on_step is not None:
            on_step()
    totals = cluster.all_reduce_sum(torch.stack([loss_sum, correct.double()]))
    return float(totals[0]), int(totals[1])


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    images: ImageSet,
    mean: torch.Tensor,
    std: torch.Tensor,
    accel: Accel,
    cluster: Cluster = Cluster(),
    batch_size: int = 1024,
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy on ``images`` (no augmentation), sharded over ranks."""
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
            logits = model(accel.layout(normalise(x.to(accel.device), mean, std)))
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    totals = cluster.all_reduce_sum(torch.stack([loss_sum, correct.double()]))
    model.train(was_training)
    return float(totals[0]) / n, float(totals[1]) / n
