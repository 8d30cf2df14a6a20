"""The training loop: the TP's recipe, per-epoch history, checkpoints and feature dumps."""

from __future__ import annotations

import math
import platform
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

import ncood
from ncood.atomic import atomic_path
from ncood.engine.data import ImageSet, load_data, normalise, random_crop_flip
from ncood.engine.extract import extract_dump
from ncood.engine.model import ResNet18
from ncood.engine.presets import TrainConfig
from ncood.errors import NcoodError
from ncood.features import save_features
from ncood.progress import progress_bar
from ncood.run import MANIFEST, RUN_FORMAT, RUN_FORMAT_VERSION, RunDir


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise NcoodError(f"--device {name} asked for, but no CUDA device is available")
    return torch.device(name)


def make_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer):
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    return torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=config.milestones, gamma=config.gamma
    )


def versions() -> dict[str, str]:
    import torchvision

    return {
        "ncood": ncood.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
    }


def save_weights(model: torch.nn.Module, path: Path, epoch: int) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": "ncood-weights", "epoch": str(epoch)})


@torch.no_grad()
def evaluate(model, images: ImageSet, mean, std, batch_size: int = 512) -> tuple[float, float]:
    model.eval()
    total_loss, correct = 0.0, 0
    for start in range(0, len(images), batch_size):
        x = normalise(images.images[start : start + batch_size], mean, std)
        y = images.labels[start : start + batch_size]
        logits = model(x)
        total_loss += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    model.train()
    return total_loss / len(images), correct / len(images)


def train(
    config: TrainConfig, out: str | Path, *, force: bool = False, show_progress: bool = True
) -> RunDir:
    """Train one run from scratch into ``out`` and dump features at each checkpoint epoch."""
    config = config.resolved()
    root = Path(out)
    if (root / MANIFEST).exists():
        if not force:
            raise NcoodError(
                f"{root} already holds a run (use another --out, or --force to replace it)"
            )
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    run = RunDir(root)
    device = pick_device(config.device)

    ind, ood = load_data(config.dataset, config.ood, config.data_dir)
    to_device = lambda s: ImageSet(s.images.to(device), s.labels.to(device))  # noqa: E731
    train_set, test_set = to_device(ind.train), to_device(ind.test)
    mean = torch.tensor(ind.mean, device=device)
    std = torch.tensor(ind.std, device=device)

    torch.manual_seed(config.seed)
    model = ResNet18(ind.num_classes, width=config.width).to(device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    scheduler = make_scheduler(config, optimizer)

    manifest: dict[str, Any] = {
        "format": RUN_FORMAT,
        "format_version": RUN_FORMAT_VERSION,
        "status": "running",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seed": config.seed,
        "config": config.to_dict(),
        "versions": versions(),
        "device": str(device),
        "dataset": {
            "name": ind.name,
            "num_classes": ind.num_classes,
            "train_size": len(ind.train),
            "test_size": len(ind.test),
            "ood": {name: len(images) for name, images in ood.items()},
            "mean": list(ind.mean),
            "std": list(ind.std),
        },
        "model": {
            "name": "resnet18-cifar",
            "width": config.width,
            "feature_dim": model.feature_dim,
        },
        "files": {},
    }
    run.write_manifest(manifest)

    history: list[dict[str, Any]] = []
    steps = math.ceil(len(train_set) / config.batch_size)
    last_good = None
    with progress_bar(show_progress) as progress:
        epochs_task = progress.add_task(f"train {config.preset}", total=config.epochs, status="")
        batch_task = progress.add_task("  epoch", total=steps, status="")
        for epoch in range(1, config.epochs + 1):
            started = time.perf_counter()
            generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
            order = torch.randperm(len(train_set), generator=generator).to(device)
            lr = optimizer.param_groups[0]["lr"]
            loss_sum, correct = 0.0, 0
            progress.reset(batch_task, total=steps)
            model.train()
            for start in range(0, len(train_set), config.batch_size):
                index = order[start : start + config.batch_size]
                x = random_crop_flip(
                    train_set.images[index], config.crop_padding, config.flip, generator
                )
                y = train_set.labels[index]
                logits = model(normalise(x, mean, std))
                loss = F.cross_entropy(logits, y)
                if not torch.isfinite(loss):
                    where = f"epoch {last_good}" if last_good else "none was written"
                    raise NcoodError(
                        f"training loss became non-finite at epoch {epoch}; "
                        f"last good checkpoint: {where}"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.item() * len(index)
                correct += (logits.argmax(1) == y).sum().item()
                progress.advance(batch_task)
            scheduler.step()
            test_loss, test_acc = evaluate(model, test_set, mean, std)
            record = {
                "epoch": epoch,
                "lr": lr,
                "train_loss": loss_sum / len(train_set),
                "train_acc": correct / len(train_set),
                "test_loss": test_loss,
                "test_acc": test_acc,
                "seconds": time.perf_counter() - started,
            }
            history.append(record)
            run.write_history(history)
            if epoch in config.checkpoint_epochs:
                save_weights(model, run.checkpoint(epoch), epoch)
                dump = extract_dump(
                    model,
                    ind,
                    ood,
                    mean,
                    std,
                    with_stages=config.stage_features,
                    metadata={"epoch": str(epoch), "dataset": ind.name, "run": str(root.name)},
                )
                save_features(run.features(epoch), dump)
                last_good = epoch
            progress.update(
                epochs_task,
                advance=1,
                status=f"loss {record['train_loss']:.3f} acc {record['train_acc']:.3f} "
                f"test {test_acc:.3f}",
            )

    manifest["status"] = "complete"
    manifest["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    manifest["files"] = run.checksums()
    run.write_manifest(manifest)
    return run
