"""One pass of a model over every split, streamed into one features file (docs/run-format.md).

Memory stays one batch whatever the dataset's size: rows land at their offset through
:class:`~ncood.store.features_writer.FeaturesWriter`, the writer of the engine's checkpoint
dumps too. The first batch is checked (``features @ W.T + b`` = logits) before anything is
written. Like the engine's dump, the pass runs in exact fp32 (no autocast, no TF32: the
engine's ``exact_fp32``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from ncood.engine.accel import exact_fp32
from ncood.errors import NcoodError
from ncood.extraction.inputs import Source
from ncood.extraction.sharding import Shards
from ncood.models.capture import FeatureTap, HeadChoice, check_affine, head_tensors
from ncood.store.features_writer import FeaturesWriter

ID_SPLITS = ("train", "test")


@dataclass(frozen=True)
class Extracted:
    """What one pass measured: accuracy of each ID split, the head check's error."""

    accuracy: dict[str, float]
    affine_error: float


def extract_features(
    path,
    model: torch.nn.Module,
    choice: HeadChoice,
    sources: dict[str, Source],
    device: torch.device,
    *,
    metadata: dict[str, str] | None = None,
    on_batch: Callable[[int], None] | None = None,
    shards: Shards | None = None,
) -> Extracted:
    """Write the features file of ``sources`` ("train", "test", "ood/<name>") at ``path``.

    Under torchrun (``shards``) each rank's sources are its shards (ncood.extraction.sharding)
    and every rank calls this; rank 0 alone writes ``path`` (None elsewhere)."""
    if shards is not None and shards.cluster.distributed:
        return _extract_sharded(path, model, choice, sources, device, shards, metadata, on_batch)
    for split, source in sources.items():
        if source.count == 0:
            raise NcoodError(f"split {split!r} has no images")
    weight, bias = head_tensors(choice.head)
    classes, dim = weight.shape
    was_training = model.training
    model.eval()
    correct: dict[str, int] = {}
    affine_error: float | None = None
    try:
        with (
            torch.no_grad(),
            exact_fp32(),
            FeatureTap(model, choice) as tap,
            FeaturesWriter(
                path,
                classes=classes,
                dim=dim,
                splits={split: source.count for split, source in sources.items()},
                metadata=metadata,
            ) as writer,
        ):
            writer.write_head(weight.numpy(), bias.numpy())
            for split, source in sources.items():
                row = 0
                for inputs, labels in source.batches(device):
                    features, logits = tap.forward(inputs)
                    if affine_error is None:
                        affine_error = check_affine(features, logits, choice)
                    count = int(logits.shape[0])
                    if row + count > source.count:
                        raise NcoodError(f"{split}: more images than the {source.count} announced")
                    labels = _checked_labels(split, labels, count, classes)
                    logits_cpu = logits.float().cpu()
                    writer.write_rows(split, "features", row, features.float().cpu().numpy())
                    writer.write_rows(split, "logits", row, logits_cpu.numpy())
                    writer.write_rows(split, "labels", row, labels.numpy())
                    if split in ID_SPLITS:
                        hits = int((logits_cpu.argmax(1) == labels).sum())
                        correct[split] = correct.get(split, 0) + hits
                    row += count
                    if on_batch is not None:
                        on_batch(count)
                if row != source.count:
                    raise NcoodError(f"{split}: {row} images came, {source.count} announced")
    finally:
        model.train(was_training)
    accuracy = {s: correct.get(s, 0) / sources[s].count for s in ID_SPLITS if s in sources}
    return Extracted(accuracy, float(affine_error or 0.0))


def _extract_sharded(path, model, choice, sources, device, shards, metadata, on_batch):
    """Every rank runs its batches of each split in step; rank 0 gathers and writes them."""
    for split, total in shards.totals.items():
        if total == 0:
            raise NcoodError(f"split {split!r} has no images")
    weight, bias = head_tensors(choice.head)
    classes, dim = weight.shape
    main = shards.cluster.main
    was_training = model.training
    model.eval()
    correct: dict[str, int] = {}
    affine_error: float | None = None
    writer = None
    if main:
        writer = FeaturesWriter(
            path, classes=classes, dim=dim, splits=shards.totals, metadata=metadata
        )
    try:
        with (
            torch.no_grad(),
            exact_fp32(),
            FeatureTap(model, choice) as tap,
            writer or nullcontext(),
        ):
            if writer is not None:
                writer.write_head(weight.numpy(), bias.numpy())
            for split, source in sources.items():
                batches = iter(source.batches(device))
                for step in range(shards.steps(split)):
                    _, expected = shards.rows(split, step, shards.cluster.rank)
                    packed = torch.zeros((0, dim + classes + 1), device=device)
                    if expected:
                        inputs, labels = next(batches)
                        features, logits = tap.forward(inputs)
                        if affine_error is None:
                            affine_error = check_affine(features, logits, choice)
                        if int(logits.shape[0]) != expected:
                            raise NcoodError(
                                f"{split}: a batch of {int(logits.shape[0])} images where "
                                f"{expected} were due"
                            )
                        labels = _checked_labels(split, labels, expected, classes)
                        column = labels.to(device=logits.device, dtype=torch.float32)[:, None]
                        packed = torch.cat([features.float(), logits.float(), column], 1)
                    gathered = shards.cluster.gather_rows(packed, shards.batch_size)
                    for rank, rows in enumerate(gathered):
                        first, count = shards.rows(split, step, rank)
                        if count:
                            _write_gathered(writer, split, first, rows[:count], dim, classes)
                            if split in ID_SPLITS:
                                hits = (
                                    rows[:count, dim : dim + classes].argmax(1) == rows[:count, -1]
                                )
                                correct[split] = correct.get(split, 0) + int(hits.sum())
                            if on_batch is not None:
                                on_batch(count)
                if next(batches, None) is not None:
                    raise NcoodError(f"{split}: more images than the {source.count} announced")
    finally:
        model.train(was_training)
    accuracy = {s: correct.get(s, 0) / shards.totals[s] for s in ID_SPLITS if s in sources}
    return Extracted(accuracy, float(affine_error or 0.0))


def _write_gathered(writer, split: str, first: int, rows, dim: int, classes: int) -> None:
    writer.write_rows(split, "features", first, rows[:, :dim])
    writer.write_rows(split, "logits", first, rows[:, dim : dim + classes])
    writer.write_rows(split, "labels", first, rows[:, -1].astype("int64"))


def _checked_labels(split: str, labels: torch.Tensor, count: int, classes: int) -> torch.Tensor:
    labels = labels.reshape(-1).to(torch.int64).cpu()
    if labels.shape[0] != count:
        raise NcoodError(f"{split}: a batch of {count} images came with {labels.shape[0]} labels")
    if split not in ID_SPLITS:
        return torch.full_like(labels, -1)
    if count and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise NcoodError(
            f"{split}: label {int(labels.max() if labels.max() >= classes else labels.min())} "
            f"outside [0, {classes}) of the model's {classes} classes (wrong --num-classes "
            f"or dataset?)"
        )
    return labels
