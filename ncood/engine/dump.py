"""Dump the features at a checkpoint: run the network being trained once over every split and
stream its outputs to the run's features file (ncood.store.features_writer).

Always in exact fp32, whatever the training precision: no autocast, no TF32 (restored after).
NC1 late in training, Mahalanobis, ViM, NECO and every NC metric read these numbers; bf16
would leave them about 3 significant digits.

Memory stays bounded whatever the number of images: one batch of activations at a time, written
at its offset in the file. Under torchrun, each rank computes its share of every block of
``world × batch_size`` images; rank 0 gathers the blocks and is the only one that writes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import torch

from ncood.datasets import ImageSet, normalize
from ncood.engine.accel import Accel, exact_fp32
from ncood.engine.distributed import Cluster
from ncood.engine.resnet import STAGES, ResNet18
from ncood.store.features_writer import FeaturesWriter


def forward_batch_size(device: torch.device) -> int:
    """Images per forward pass without gradients (this dump, an imported model's extraction,
    the model-based scorers): 512 fills a GPU; on a CPU larger batches gain nothing and cost
    memory (about 1.3 MiB of activations per image at width 64)."""
    return 512 if device.type == "cuda" else 128


def _parts(model: ResNet18, with_stages: bool) -> list[tuple[str, int]]:
    """The per-image float outputs, in the order they are packed into one row."""
    parts = [("features", model.feature_dim), ("logits", model.fc.out_features)]
    if with_stages:
        parts += [(f"layers/{name}", model.stage_dims[name]) for name in STAGES]
    return parts


@torch.no_grad()
def _rows(
    model: ResNet18,
    batch: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    accel: Accel,
    with_stages: bool,
) -> torch.Tensor:
    """One packed float32 row per image: features | logits | pooled stages (fp32 throughout;
    channels_last changes the memory layout only)."""
    features, pooled = model.forward_features(
        accel.layout(normalize(batch, mean, std)), with_stages
    )
    columns = [features, model.fc(features)]
    columns += [pooled[name] for name in STAGES] if with_stages else []
    return torch.cat(columns, 1)


@torch.no_grad()
@exact_fp32()
def dump_features(
    path,
    model: ResNet18,
    splits: dict[str, ImageSet],
    mean: torch.Tensor,
    std: torch.Tensor,
    accel: Accel,
    cluster: Cluster = Cluster(),
    *,
    with_stages: bool = False,
    metadata: dict[str, str] | None = None,
    batch_size: int | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> None:
    """Write the features file for ``splits`` ("train", "test", "ood/<name>") at ``path``.

    Every rank must call this; only rank 0 touches ``path``.
    """
    was_training = model.training
    model.eval()
    device = accel.device
    batch_size = batch_size or forward_batch_size(device)
    parts = _parts(model, with_stages)
    width = sum(dim for _, dim in parts)
    stride = batch_size * cluster.world
    writer = None  # rank 0's
    if cluster.main:
        classes, dim = model.fc.weight.shape
        writer = FeaturesWriter(
            path,
            classes=classes,
            dim=dim,
            splits={split: len(images) for split, images in splits.items()},
            stages={name: model.stage_dims[name] for name in STAGES} if with_stages else None,
            metadata=metadata,
        )
    try:
        with writer or contextlib.nullcontext():
            if writer is not None:
                writer.write_head(
                    model.fc.weight.detach().float().cpu().numpy(),
                    model.fc.bias.detach().float().cpu().numpy(),
                )
            for split, images in splits.items():
                n = len(images)
                if writer is not None:
                    writer.write_rows(split, "labels", 0, images.labels.cpu().numpy())
                for block in range(0, n, stride):
                    start = block + cluster.rank * batch_size
                    local = images.images[start : min(start + batch_size, n)].to(device)
                    if local.shape[0]:
                        rows = _rows(model, local, mean, std, accel, with_stages)
                    else:
                        rows = torch.zeros((0, width), device=device)
                    shards = cluster.gather_rows(rows, batch_size)
                    if writer is not None:
                        for rank, shard in enumerate(shards):
                            first = block + rank * batch_size
                            count = max(0, min(batch_size, n - first))
                            if count:
                                _write_packed(writer, split, first, shard[:count], parts)
                    if on_batch is not None:
                        on_batch(min(stride, n - block))
    finally:
        model.train(was_training)


def _write_packed(
    writer: FeaturesWriter, split: str, first: int, packed: np.ndarray, parts
) -> None:
    column = 0
    for part, dim in parts:
        writer.write_rows(split, part, first, packed[:, column : column + dim])
        column += dim


def splits_of(train: ImageSet, test: ImageSet, ood: dict[str, ImageSet]) -> dict[str, ImageSet]:
    """The split names of the features file, in its order."""
    return {"train": train, "test": test, **{f"ood/{name}": s for name, s in ood.items()}}
