"""The tensor data pipeline: crop/flip against torchvision's own ops, the epoch plan, sharding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

import ncood.engine.batches as batches_module
from ncood.datasets import channel_stats, normalize, synthetic_set
from ncood.engine.batches import (
    crop_flip,
    epoch_batches,
    global_batches,
    local_positions,
    plan_epoch,
    training_batches,
)

CPU = torch.device("cpu")


@pytest.mark.parametrize("padding", [0, 2, 4])
def test_crop_flip_equals_torchvision_crop_then_flip(padding):
    """torchvision's RandomCrop(32, padding) + RandomHorizontalFlip, at given offsets."""
    generator = torch.Generator().manual_seed(padding)
    batch = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=generator)
    dy = torch.randint(0, 2 * padding + 1, (6,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (6,), generator=generator)
    flips = torch.tensor([True, False, True, False, True, True])
    out = crop_flip(batch, dy, dx, flips, padding)
    for i in range(6):
        expected = TF.crop(TF.pad(batch[i], [padding]), int(dy[i]), int(dx[i]), 32, 32)
        if flips[i]:
            expected = TF.hflip(expected)
        assert torch.equal(out[i], expected), i


def test_crop_with_known_offsets():
    image = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4)
    # padding 1, crop at (0, 0): the top row and left column are the zero padding
    out = crop_flip(image, torch.tensor([0]), torch.tensor([0]), torch.tensor([False]), 1)
    assert out[0, 0].tolist() == [[0, 0, 0, 0], [0, 0, 1, 2], [0, 4, 5, 6], [0, 8, 9, 10]]
    out = crop_flip(image, torch.tensor([2]), torch.tensor([1]), torch.tensor([True]), 1)
    assert out[0, 0].tolist() == [[7, 6, 5, 4], [11, 10, 9, 8], [15, 14, 13, 12], [0, 0, 0, 0]]


def test_epoch_plan_depends_only_on_seed_and_epoch():
    a = plan_epoch(100, seed=3, epoch=7, padding=4, flip=True, device=CPU)
    b = plan_epoch(100, seed=3, epoch=7, padding=4, flip=True, device=CPU)
    c = plan_epoch(100, seed=3, epoch=8, padding=4, flip=True, device=CPU)
    assert all(torch.equal(x, y) for x, y in zip(vars(a).values(), vars(b).values(), strict=True))
    assert not torch.equal(a.order, c.order)
    assert sorted(a.order.tolist()) == list(range(100))
    assert a.dy.min() >= 0 and a.dy.max() <= 8 and 20 < int(a.flips.sum()) < 80
    assert not plan_epoch(100, 3, 7, 4, flip=False, device=CPU).flips.any()


def test_shards_of_a_global_batch_are_exactly_the_global_batch():
    assert global_batches(10, 4) == [(0, 4), (4, 8), (8, 10)]
    for start, stop in global_batches(10, 4):
        shards = [local_positions(start, stop, r, 3, CPU).tolist() for r in range(3)]
        assert sorted(sum(shards, [])) == list(range(start, stop))


def test_ranks_see_the_same_augmented_images_as_one_process():
    data = synthetic_set(37, 5)
    plan = plan_epoch(37, 0, 1, 4, True, CPU)
    single = list(training_batches(data.train.images, data.train.labels, plan, 8, 4))
    for step, (batch, labels, count) in enumerate(single):
        parts = [
            list(
                training_batches(data.train.images, data.train.labels, plan, 8, 4, rank=r, world=3)
            )[step]
            for r in range(3)
        ]
        assert all(part[2] == count for part in parts)
        for r, (shard, shard_labels, _) in enumerate(parts):
            assert torch.equal(shard, batch[r::3]) and torch.equal(shard_labels, labels[r::3])
    assert sum(len(labels) for _, labels, _ in single) == 37


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("world", [1, 3])
def test_the_prebuilt_epoch_is_bitwise_the_per_step_input(monkeypatch, channels_last, world):
    """Each step's slice of the epoch tensor is exactly what the per-step path gives the
    network (augment, normalize, layout), on every rank; built in chunks smaller than a batch
    and across batch boundaries, so chunking cannot show."""
    monkeypatch.setattr(batches_module, "BUILD_CHUNK", 5)
    data = synthetic_set(37, 5)
    mean, std = torch.tensor(data.mean), torch.tensor(data.std)
    plan = plan_epoch(37, 0, 2, 4, True, CPU)
    for rank in range(world):
        built = epoch_batches(
            data.train.images,
            data.train.labels,
            plan,
            8,
            4,
            mean,
            std,
            channels_last=channels_last,
            rank=rank,
            world=world,
        )
        expected = list(
            training_batches(
                data.train.images, data.train.labels, plan, 8, 4, rank=rank, world=world
            )
        )
        assert len(built) == len(expected) == 5
        for (inputs, labels, count), (batch, batch_labels, batch_count) in zip(
            built, expected, strict=True
        ):
            reference = normalize(batch, mean, std)
            assert inputs.shape == reference.shape and count == batch_count
            assert torch.equal(inputs, reference) and torch.equal(labels, batch_labels)
            layout = torch.channels_last if channels_last else torch.contiguous_format
            assert inputs.is_contiguous(memory_format=layout)  # a view: no copy per step


def test_channel_stats_in_chunks_match_numpy():
    images = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8)
    mean, std = channel_stats(images, chunk=7)
    pixels = images.numpy().astype(np.float64).transpose(1, 0, 2, 3).reshape(3, -1) / 255
    assert np.allclose(mean, pixels.mean(1), atol=1e-12)
    assert np.allclose(std, pixels.std(1, ddof=1), atol=1e-12)


def test_synthetic_set_is_balanced_and_reproducible():
    a, b = synthetic_set(200, 50, num_classes=10), synthetic_set(200, 50, num_classes=10)
    assert torch.equal(a.train.images, b.train.images)
    assert torch.bincount(a.train.labels).tolist() == [20] * 10
    # a class is recognisable: its images are closer to their own class mean than to others'
    means = torch.stack([a.train.images[a.train.labels == c].float().mean(0) for c in range(10)])
    distances = torch.cdist(a.test.images.float().flatten(1), means.flatten(1))
    assert (distances.argmin(1) == a.test.labels).float().mean() > 0.9
