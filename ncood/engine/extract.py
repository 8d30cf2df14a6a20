"""Feature extraction: run the trained network once over every split and dump the results."""

from __future__ import annotations

import numpy as np
import torch

from ncood.engine.data import ImageSet, InDistribution, normalise
from ncood.engine.model import STAGES, ResNet18
from ncood.features import FeatureDump, Head, Split


@torch.no_grad()
def extract_split(
    model: ResNet18,
    images: ImageSet,
    mean: torch.Tensor,
    std: torch.Tensor,
    *,
    batch_size: int = 512,
    with_stages: bool = False,
    on_batch=None,
) -> Split:
    """Penultimate features and logits, written batch by batch into preallocated arrays."""
    was_training = model.training
    model.eval()
    device = mean.device
    n = len(images)
    features = np.empty((n, model.feature_dim), dtype=np.float32)
    logits = np.empty((n, model.fc.out_features), dtype=np.float32)
    stages: dict[str, np.ndarray] = {}
    for start in range(0, n, batch_size):
        batch = images.images[start : start + batch_size].to(device, non_blocking=True)
        feats, pooled = model.forward_features(normalise(batch, mean, std), with_stages)
        stop = start + batch.shape[0]
        features[start:stop] = feats.float().cpu().numpy()
        logits[start:stop] = model.fc(feats).float().cpu().numpy()
        for name in STAGES if with_stages else ():
            values = pooled[name].float().cpu().numpy()
            stages.setdefault(name, np.empty((n, values.shape[1]), dtype=np.float32))
            stages[name][start:stop] = values
        if on_batch is not None:
            on_batch(stop - start)
    model.train(was_training)
    return Split(features, logits, images.labels.cpu().numpy().astype(np.int64), stages)


def extract_dump(
    model: ResNet18,
    ind: InDistribution,
    ood: dict[str, ImageSet],
    mean: torch.Tensor,
    std: torch.Tensor,
    *,
    with_stages: bool = False,
    metadata: dict[str, str] | None = None,
    on_batch=None,
) -> FeatureDump:
    def run(images: ImageSet) -> Split:
        return extract_split(model, images, mean, std, with_stages=with_stages, on_batch=on_batch)

    head = Head(
        model.fc.weight.detach().float().cpu().numpy(), model.fc.bias.detach().float().cpu().numpy()
    )
    return FeatureDump(
        train=run(ind.train),
        test=run(ind.test),
        ood={name: run(images) for name, images in ood.items()},
        head=head,
        metadata=metadata or {},
    )
