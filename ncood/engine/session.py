"""What one training process holds once a run starts: the data on its device, the model, the
optimizer and schedule, and the module the step loop calls (DDP- and compile-wrapped).

Built the same way for a new run and a resumed one; a resumed one then loads its saved state
(ncood.engine.state) into these fresh objects.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any

import torch

from ncood.datasets import ImageSet, InDistribution, load_data
from ncood.engine.accel import Accel, compile_model, pick_device, setup_accel
from ncood.engine.batches import EpochBatches, epoch_batches, plan_epoch
from ncood.engine.distributed import Cluster
from ncood.engine.losses import Objective, objective_of
from ncood.engine.resnet import ResNet18, network_for
from ncood.engine.state import SavedState, restore
from ncood.engine.syncbn import convert_batchnorm
from ncood.errors import NcoodError
from ncood.store.train_config import TrainConfig


@dataclass
class Session:
    config: TrainConfig
    cluster: Cluster
    accel: Accel
    ind: InDistribution
    train_set: ImageSet  # on the device
    test_set: ImageSet
    ood: dict[str, ImageSet]
    mean: torch.Tensor
    std: torch.Tensor
    model: ResNet18
    optimizer: torch.optim.Optimizer
    scheduler: Any
    step_model: torch.nn.Module  # what the step loop calls: model, DDP(model), compiled
    synced: bool  # BatchNorm over the global batch (torchrun)
    usable: int  # training images per epoch (per-rank BatchNorm may drop a tiny tail)
    objective: Objective  # the run's loss (--loss, --entropy-reg)

    @property
    def device(self) -> torch.device:
        return self.accel.device

    @property
    def steps(self) -> int:
        return math.ceil(self.usable / self.config.batch_size)

    def epoch_input(self, epoch: int) -> EpochBatches:
        """The epoch's augmented, normalized input for this rank, built once (see batches)."""
        config = self.config
        plan = plan_epoch(
            len(self.train_set),
            config.seed,
            epoch,
            config.crop_padding,
            config.flip,
            self.device,
        )
        if self.usable < len(plan):
            plan = plan.head(self.usable)
        return epoch_batches(
            self.train_set.images,
            self.train_set.labels,
            plan,
            config.batch_size,
            config.crop_padding,
            self.mean,
            self.std,
            channels_last=self.accel.channels_last,
            rank=self.cluster.rank,
            world=self.cluster.world,
        )


def train_subset_index(size: int, wanted: int, seed: int) -> torch.Tensor:
    """A fixed random subset (same for every rank and every resume), in dataset order."""
    generator = torch.Generator().manual_seed(seed + 7919)
    return torch.randperm(size, generator=generator)[: min(wanted, size)].sort().values


def make_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer):
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    return torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=config.milestones, gamma=config.gamma
    )


def make_optimizer(config: TrainConfig, model: torch.nn.Module, device: torch.device):
    """SGD over the trained parameters (a fixed ETF head or projector is not one: no update,
    no weight decay); fused (one kernel for every parameter) on CUDA where torch offers it."""
    options: dict[str, Any] = {}
    if device.type == "cuda" and "fused" in inspect.signature(torch.optim.SGD).parameters:
        options["fused"] = True
    return torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad],
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        **options,
    )


def ddp_buffer_option(sync_buffers: bool) -> dict[str, bool]:
    """DDP's keyword for syncing buffers at each forward, by what the installed torch offers
    (``forward_sync_buffers`` in recent releases, ``broadcast_buffers`` before)."""
    parameters = inspect.signature(torch.nn.parallel.DistributedDataParallel).parameters
    if "forward_sync_buffers" in parameters:
        return {"forward_sync_buffers": sync_buffers}
    return {"broadcast_buffers": sync_buffers}


def load_session_data(
    config: TrainConfig, cluster: Cluster, show_progress: bool
) -> tuple[InDistribution, ImageSet, dict[str, ImageSet]]:
    """The datasets (read once per rank, downloaded by rank 0 first), the train subset."""
    ind, ood = cluster.first(
        lambda: load_data(
            config.dataset,
            config.ood,
            config.data_dir,
            download=config.download,
            show_progress=show_progress,
            benchmark=config.benchmark,
        )
    )
    train = ind.train
    if config.train_subset:
        train = train.subset(train_subset_index(len(train), config.train_subset, config.seed))
    return ind, train, ood


def check_same_data(
    manifest: dict[str, Any], train: ImageSet, ind: InDistribution, ood: dict[str, ImageSet]
) -> None:
    recorded = manifest.get("dataset", {})
    found = {
        "train_size": len(train),
        "test_size": len(ind.test),
        "ood": {name: len(images) for name, images in ood.items()},
    }
    for key, value in found.items():
        if recorded.get(key) != value:
            raise NcoodError(
                f"the data changed since the run started ({key}: {recorded.get(key)} then, "
                f"{value} now); resume with the same data (--data-dir)"
            )


def usable_images(train_size: int, config: TrainConfig, cluster: Cluster, synced: bool) -> int:
    """Per-rank BatchNorm needs 2 samples a rank in the last batch; drop a smaller tail."""
    if cluster.distributed and not synced:
        tail = train_size % config.batch_size
        if 0 < tail < 2 * cluster.world:
            return train_size - tail
    return train_size


def open_session(
    config: TrainConfig,
    cluster: Cluster,
    saved: SavedState | None,
    manifest: dict[str, Any] | None,
    show_progress: bool,
) -> Session:
    device = pick_device(config.device, cluster)
    accel = setup_accel(config, device)
    ind, train_cpu, ood = load_session_data(config, cluster, show_progress)
    if manifest is not None:
        check_same_data(manifest, train_cpu, ind, ood)
    torch.manual_seed(config.seed)
    model = network_for(config, ind.num_classes).to(device)
    synced = cluster.distributed and config.sync_batchnorm
    if synced:
        model = convert_batchnorm(model)
    if accel.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(config, model, device)
    scheduler = make_scheduler(config, optimizer)
    if saved is not None:
        restore(saved, model, optimizer, scheduler, device)
    step_model: torch.nn.Module = model
    if cluster.distributed:
        step_model = torch.nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            **ddp_buffer_option(not synced),  # global BatchNorm keeps the buffers equal
        )
    if accel.compile:
        step_model = compile_model(step_model, accel)
    return Session(
        config=config,
        cluster=cluster,
        accel=accel,
        ind=ind,
        train_set=train_cpu.to(device),
        test_set=ind.test.to(device),
        ood={name: images.to(device) for name, images in ood.items()},
        mean=torch.tensor(ind.mean, device=device),
        std=torch.tensor(ind.std, device=device),
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        step_model=step_model,
        synced=synced,
        usable=usable_images(len(train_cpu), config, cluster, synced),
        objective=objective_of(config),
    )
