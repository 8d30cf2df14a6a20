"""Training runs: start one, or resume one that was killed, on one process or under torchrun.

Each epoch ends with, in this order: ``history.json``; at checkpoint epochs the features file
and the weights; then the resume state (ncood.engine.state). Every file is written atomically
by rank 0 alone, under the run-directory lock. A kill anywhere loses at most the epoch in
progress, and ``--resume`` replays it bit for bit.
"""

from __future__ import annotations

import contextlib
import math
import platform
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

import ncood
from ncood.atomic import atomic_path, clean_stale
from ncood.engine.accel import Accel, pick_device, setup_accel
from ncood.engine.batches import plan_epoch
from ncood.engine.data import ImageSet, InDistribution, check_names, load_data
from ncood.engine.distributed import Cluster, start_cluster, stop_cluster
from ncood.engine.extract import dump_features, splits_of
from ncood.engine.faults import explain_write_error, run_writes
from ncood.engine.lock import RunLock
from ncood.engine.loop import evaluate, train_epoch
from ncood.engine.model import ResNet18
from ncood.engine.presets import TrainConfig
from ncood.engine.state import SavedState, StateWriter, read_state, restore, snapshot
from ncood.engine.syncbn import convert_batchnorm
from ncood.errors import NcoodError
from ncood.progress import progress_bar
from ncood.run import LOCK, MANIFEST, RUN_FORMAT, RUN_FORMAT_VERSION, RunDir, read_json
from ncood.run_cleanup import clear_run


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


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def save_weights(model: torch.nn.Module, path: Path, epoch: int) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": "ncood-weights", "epoch": str(epoch)})


def train_subset_index(size: int, wanted: int, seed: int) -> torch.Tensor:
    """A fixed random subset (same for every rank and every resume), in dataset order."""
    generator = torch.Generator().manual_seed(seed + 7919)
    return torch.randperm(size, generator=generator)[: min(wanted, size)].sort().values


@dataclass
class _Run:
    """What a training process holds: the run, its lock (rank 0), and what was saved."""

    config: TrainConfig
    run: RunDir
    cluster: Cluster
    lock: RunLock | None
    manifest: dict[str, Any] | None = None
    saved: SavedState | None = None
    resume_note: dict[str, Any] = field(default_factory=dict)


def train(
    config: TrainConfig, out: str | Path, *, force: bool = False, show_progress: bool = True
) -> RunDir:
    """Train one run from scratch into ``out`` and dump features at each checkpoint epoch."""
    config = config.resolved()
    check_names(config.dataset, config.ood)
    cluster = start_cluster(config.device)
    run = RunDir(Path(out))
    lock = RunLock(run.lock_path) if cluster.main else None

    def claim() -> None:
        if run.root.exists() and not run.root.is_dir():
            raise NcoodError(f"--out {run.root} is a file, not a folder")
        with run_writes(run.root):
            lock.acquire()
            try:
                if (run.root / MANIFEST).exists():
                    if not force:
                        raise NcoodError(
                            f"{run.root} already holds a run (use another --out, --force to "
                            f"replace it, or --resume to continue it)"
                        )
                    clear_run(run.root)  # an ncood run's own files only
            except BaseException:
                lock.release()
                raise

    created = cluster.main and not run.root.exists()
    try:
        cluster.agree(claim)
        return _execute(_Run(config, run, cluster, lock), show_progress)
    except BaseException:
        if created and not run.manifest_path.exists():
            _remove_unstarted(run.root)
        raise
    finally:
        stop_cluster(cluster)


def resume(
    run_dir: str | Path,
    *,
    device: str | None = None,
    data_dir: str | None = None,
    show_progress: bool = True,
) -> tuple[RunDir, bool]:
    """Continue a run from its last complete epoch; returns (run, whether anything was left)."""
    root = Path(run_dir)
    cluster = start_cluster(device or _peek_device(root))
    lock = RunLock(root / LOCK) if cluster.main else None

    def open_run() -> dict[str, Any]:
        run = RunDir.open(root)
        manifest = run.manifest()
        with run_writes(root):
            lock.acquire()
            clean_stale(root, recursive=True)  # temp files a killed writer left
        if manifest.get("status") == "complete":
            lock.release()
            return {"complete": True}
        try:
            saved = read_state(run)
        except BaseException:
            lock.release()
            raise
        return {"complete": False, "manifest": manifest, "saved": saved}

    try:
        opened = cluster.agree(open_run)
        if opened["complete"]:
            return RunDir(root), False
        manifest = opened["manifest"]
        config = TrainConfig.from_dict(manifest["config"])
        note: dict[str, Any] = {}
        if device:
            config.device = note["device"] = device
        if data_dir:
            config.data_dir = note["data_dir"] = str(data_dir)
        state = _Run(
            config.resolved(), RunDir(root), cluster, lock, manifest, opened["saved"], note
        )
        return _execute(state, show_progress), True
    finally:
        stop_cluster(cluster)


def _peek_device(root: Path) -> str:
    try:
        return str(read_json(root / MANIFEST, "run manifest")["config"].get("device", "auto"))
    except (NcoodError, KeyError, TypeError, AttributeError):
        return "auto"


def _remove_unstarted(root: Path) -> None:
    """A run that failed before writing its manifest leaves no folder behind (if it made it)."""
    if root.is_dir() and {p.name for p in root.iterdir()} <= {LOCK}:
        (root / LOCK).unlink(missing_ok=True)
        root.rmdir()


def _new_manifest(
    config: TrainConfig,
    ind: InDistribution,
    train_size: int,
    ood: dict[str, ImageSet],
    model: ResNet18,
    accel: Accel,
    cluster: Cluster,
) -> dict[str, Any]:
    return {
        "format": RUN_FORMAT,
        "format_version": RUN_FORMAT_VERSION,
        "status": "running",
        "created": now(),
        "seed": config.seed,
        "config": config.to_dict(),
        "versions": versions(),
        "device": str(accel.device),
        "acceleration": accel.describe(),
        "distributed": {
            "world_size": cluster.world,
            "backend": cluster.backend,
            "sync_batchnorm": config.sync_batchnorm and cluster.distributed,
        },
        "dataset": {
            "name": ind.name,
            "num_classes": ind.num_classes,
            "train_size": train_size,
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


def _execute(state: _Run, show_progress: bool) -> RunDir:
    writer = StateWriter(state.run) if state.cluster.main else None
    try:
        return _train_epochs(state, writer, show_progress and state.cluster.main)
    finally:
        if writer is not None:
            with contextlib.suppress(OSError):  # the epoch's error is already on its way up
                writer.wait()
        if state.lock is not None:
            state.lock.release()


def _train_epochs(state: _Run, writer: StateWriter | None, show_progress: bool) -> RunDir:
    config, run, cluster = state.config, state.run, state.cluster
    device = pick_device(config.device, cluster)
    accel = setup_accel(config, device)
    ind, ood = cluster.first(
        lambda: load_data(
            config.dataset,
            config.ood,
            config.data_dir,
            download=config.download,
            show_progress=show_progress,
        )
    )
    train_cpu = ind.train
    if config.train_subset:
        train_cpu = train_cpu.subset(
            train_subset_index(len(train_cpu), config.train_subset, config.seed)
        )
    if state.manifest is not None:
        _check_same_data(state.manifest, train_cpu, ind, ood)
    train_set, test_set = train_cpu.to(device), ind.test.to(device)
    ood = {name: images.to(device) for name, images in ood.items()}
    mean = torch.tensor(ind.mean, device=device)
    std = torch.tensor(ind.std, device=device)

    torch.manual_seed(config.seed)
    model = ResNet18(ind.num_classes, width=config.width).to(device)
    synced = cluster.distributed and config.sync_batchnorm
    if synced:
        model = convert_batchnorm(model, device)
    if accel.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    scheduler = make_scheduler(config, optimizer)
    history: list[dict[str, Any]] = []
    start = 0
    if state.saved is not None:
        restore(state.saved, model, optimizer, scheduler)
        history, start = state.saved.history, state.saved.epoch
    step_model: torch.nn.Module = model
    if cluster.distributed:
        step_model = torch.nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            forward_sync_buffers=not synced,
        )
    if accel.compile:
        step_model = torch.compile(step_model)

    def open_manifest() -> dict[str, Any]:
        with run_writes(run.root):
            if state.manifest is None:
                manifest = _new_manifest(config, ind, len(train_set), ood, model, accel, cluster)
            else:
                manifest = dict(state.manifest)
                manifest["status"] = "running"
                manifest.pop("error", None)
                manifest.setdefault("resumes", []).append(
                    {"at": now(), "from_epoch": start, "world_size": cluster.world}
                    | state.resume_note
                )
            run.write_manifest(manifest)
            run.write_history(history)
            return manifest

    manifest = cluster.agree(open_manifest, share=False)

    usable = len(train_set)
    if cluster.distributed and not synced:
        tail = usable % config.batch_size
        if 0 < tail < 2 * cluster.world:  # per-rank BatchNorm needs 2 samples a rank
            usable -= tail
    steps = math.ceil(usable / config.batch_size)
    splits = splits_of(train_set, test_set, ood)
    extract_total = sum(len(images) for images in splits.values())
    with progress_bar(show_progress) as progress:
        epochs_task = progress.add_task(
            f"train {config.preset}", total=config.epochs, completed=start, status=""
        )
        batch_task = progress.add_task("  epoch", total=steps, status="")
        for epoch in range(start + 1, config.epochs + 1):
            started = time.perf_counter()
            progress.reset(batch_task, total=steps, description=f"  epoch {epoch}")
            plan = plan_epoch(
                len(train_set), config.seed, epoch, config.crop_padding, config.flip, device
            )
            if usable < len(plan):
                plan = type(plan)(*(t[:usable] for t in (plan.order, plan.dy, plan.dx, plan.flips)))
            lr = optimizer.param_groups[0]["lr"]
            loss_sum, correct = train_epoch(
                step_model,
                optimizer,
                train_set,
                plan,
                config.batch_size,
                config.crop_padding,
                mean,
                std,
                accel,
                cluster,
                on_step=lambda: progress.advance(batch_task),
            )
            train_seconds = time.perf_counter() - started
            scheduler.step()
            test_loss, test_acc = evaluate(model, test_set, mean, std, accel, cluster)
            train_loss = loss_sum / usable
            if not (math.isfinite(train_loss) and math.isfinite(test_loss)):
                _stop_diverged(run, cluster, epoch, train_loss, test_loss, config)
            record = {
                "epoch": epoch,
                "lr": lr,
                "train_loss": train_loss,
                "train_acc": correct / usable,
                "test_loss": test_loss,
                "test_acc": test_acc,
                "seconds": time.perf_counter() - started,
                "images_per_s": usable / train_seconds,
            }
            history.append(record)

            extract_error: OSError | None = None
            if epoch in config.checkpoint_epochs:
                extract_task = progress.add_task("  features", total=extract_total, status="")
                try:
                    dump_features(
                        run.features(epoch),
                        model,
                        splits,
                        mean,
                        std,
                        accel,
                        cluster,
                        with_stages=config.stage_features,
                        metadata={"epoch": str(epoch), "dataset": ind.name, "run": run.root.name},
                        on_batch=lambda n, task=extract_task: progress.advance(task, n),
                    )
                except OSError as exc:
                    extract_error = exc
                progress.remove_task(extract_task)

            def end_epoch(epoch=epoch, extract_error=extract_error) -> None:
                with run_writes(run.root):
                    if extract_error is not None:
                        raise extract_error
                    run.write_history(history)
                    if epoch in config.checkpoint_epochs:
                        save_weights(model, run.checkpoint(epoch), epoch)
                    writer.submit(snapshot(epoch, model, optimizer, scheduler, history))

            cluster.agree(end_epoch, share=False)
            progress.update(
                epochs_task,
                advance=1,
                status=f"loss {train_loss:.3f} acc {record['train_acc']:.3f} test {test_acc:.3f}",
            )

    def finish() -> None:
        with run_writes(run.root):
            writer.wait()
            manifest["status"] = "complete"
            manifest["finished"] = now()
            manifest["files"] = run.checksums()
            manifest["file_stats"] = run.file_stats(manifest["files"])
            run.write_manifest(manifest)

    cluster.agree(finish, share=False)
    return run


def _check_same_data(
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


def _stop_diverged(
    run: RunDir, cluster: Cluster, epoch: int, train_loss: float, test_loss: float, config
) -> None:
    kept = [e for e in config.checkpoint_epochs if e < epoch]
    message = (
        f"training diverged at epoch {epoch} (train loss {train_loss}, test loss {test_loss}); "
        + (
            f"stopped, keeping the state of epoch {epoch - 1}"
            + (f" and the checkpoints up to epoch {kept[-1]}" if kept else "")
            if epoch > 1
            else "stopped before any epoch completed"
        )
        + f". Lower --lr (now {config.lr}) and train again"
    )

    def mark() -> None:
        try:
            manifest = run.manifest()
            manifest["status"] = "stopped"
            manifest["error"] = message
            run.write_manifest(manifest)
        except (OSError, NcoodError) as exc:
            explained = isinstance(exc, OSError) and explain_write_error(exc, run.root)
            if explained:
                raise explained from None
        raise NcoodError(message)

    cluster.agree(mark, share=False)
