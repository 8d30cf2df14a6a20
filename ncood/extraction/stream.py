"""One pass of a model over every split, streamed into one features file (docs/run-format.md).

Memory stays one batch whatever the dataset's size: rows land at their offset through
:class:`~ncood.store.features_writer.FeaturesWriter`, the writer of the engine's checkpoint
dumps too. The first batch is checked (``features @ W.T + b`` = logits) before anything is
written. Like the engine's dump, the pass runs in exact fp32 (no autocast, no TF32: the
engine's ``exact_fp32``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ncood.engine.accel import exact_fp32
from ncood.errors import NcoodError
from ncood.extraction.inputs import Source
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
) -> Extracted:
    """Write the features file of ``sources`` ("train", "test", "ood/<name>") at ``path``."""
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
