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
from pathlib import Path
from typing import Any

import numpy as np
import torch

import ncood
from ncood.datasets import check_names
from ncood.datasets.digest import split_digests
from ncood.datasets.openood import benchmark_record
from ncood.engine.accel import prepare_determinism
from ncood.engine.distributed import Cluster, start_cluster, stop_cluster
from ncood.engine.dump import dump_features, splits_of
from ncood.engine.lock import RunLock
from ncood.engine.loop import evaluate, train_epoch
from ncood.engine.monitor import TrainingMonitor
from ncood.engine.session import Session, open_session
from ncood.engine.state import SavedState, StateWriter, read_state, snapshot
from ncood.errors import NcoodError
from ncood.store.atomic import clean_stale
from ncood.store.manifest import new_manifest, now
from ncood.store.outputs import WRITE_ERRORS, one_line_os_errors, os_error_line
from ncood.store.run import LOCK, MANIFEST, RunDir, read_json
from ncood.store.run_cleanup import clear_run
from ncood.store.streamed import write_arrays
from ncood.store.train_config import TrainConfig


def run_writes(root: Path):
    """Inside, a write the user can fix (a full disk, permissions) is one line: how to go on."""
    return one_line_os_errors(
        "the run keeps its last complete epoch",
        errnos=WRITE_ERRORS,
        disk_full=f"free some space, then continue with `ncood train --resume {root}` (the last "
        f"complete epoch is kept)",
    )


def versions() -> dict[str, str]:
    try:
        import torchvision

        torchvision_version = torchvision.__version__
    except ImportError:  # only the real datasets need it
        torchvision_version = "absent"
    return {
        "ncood": ncood.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision_version,
        "numpy": np.__version__,
    }


def save_weights(model: torch.nn.Module, path: Path, epoch: int) -> None:
    """The model's state_dict as an ordinary safetensors file (written by ncood's own
    streaming writer, atomically)."""
    arrays = {k: v.detach().cpu().contiguous().numpy() for k, v in model.state_dict().items()}
    write_arrays(path, arrays, {"format": "ncood-weights", "epoch": str(epoch)})


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
    config: TrainConfig,
    out: str | Path,
    *,
    force: bool = False,
    show_progress: bool = True,
    cluster: Cluster | None = None,
) -> RunDir:
    """Train one run from scratch into ``out`` and dump features at each checkpoint epoch.

    Under torchrun the processes join one group and train this run together, unless
    ``cluster`` is given (ncood.engine.seeds: each process its own runs)."""
    config = config.resolved()
    check_names(config.dataset, config.ood, benchmark=config.benchmark)
    prepare_determinism(config.deterministic)  # before torchrun's set_device starts CUDA
    own_group = cluster is None
    cluster = start_cluster(config.device) if own_group else cluster
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
        if own_group:
            stop_cluster(cluster)


def resume(
    run_dir: str | Path,
    *,
    device: str | None = None,
    data_dir: str | None = None,
    show_progress: bool = True,
    cluster: Cluster | None = None,
) -> tuple[RunDir, bool]:
    """Continue a run from its last complete epoch; returns (run, whether anything was left)."""
    root = Path(run_dir)
    stored = _peek_config(root)
    prepare_determinism(bool(stored.get("deterministic")))
    own_group = cluster is None
    if own_group:
        cluster = start_cluster(device or str(stored.get("device", "auto")))
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
        if own_group:
            stop_cluster(cluster)


def _peek_config(root: Path) -> dict[str, Any]:
    """The stored configuration, read before CUDA starts (device, determinism); {} if none."""
    try:
        config = read_json(root / MANIFEST, "run manifest")["config"]
    except (NcoodError, KeyError, TypeError):
        return {}
    return config if isinstance(config, dict) else {}


def _remove_unstarted(root: Path) -> None:
    """A run that failed before writing its manifest leaves no folder behind (if it made it)."""
    if root.is_dir() and {p.name for p in root.iterdir()} <= {LOCK}:
        (root / LOCK).unlink(missing_ok=True)
        root.rmdir()


def _new_manifest(session: Session) -> dict[str, Any]:
    config, ind, cluster = session.config, session.ind, session.cluster
    return new_manifest(
        status="running",
        created=now(),
        seed=config.seed,
        config=config.to_dict(),
        versions=versions(),
        device=str(session.device),
        acceleration=session.accel.describe(),
        distributed={
            "world_size": cluster.world,
            "backend": cluster.backend,
            "sync_batchnorm": session.synced,
        },
        dataset={
            "name": ind.name,
            "num_classes": ind.num_classes,
            "train_size": len(session.train_set),
            "test_size": len(ind.test),
            "ood": {name: len(images) for name, images in session.ood.items()},
            "digests": split_digests(
                {
                    "train": session.train_set,
                    "test": session.test_set,
                    **{f"ood/{name}": images for name, images in session.ood.items()},
                }
            ),
            "mean": list(ind.mean),
            "std": list(ind.std),
            **benchmark_record(config.benchmark),
        },
        model={
            "name": "resnet18-cifar",
            "width": config.width,
            "feature_dim": session.model.feature_dim,
        },
        files={},
    )


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
    """Open the session, then train, checkpoint and save each remaining epoch."""
    session = open_session(state.config, state.cluster, state.saved, state.manifest, show_progress)
    history = state.saved.history if state.saved is not None else []
    start = state.saved.epoch if state.saved is not None else 0
    manifest = state.cluster.agree(
        lambda: _open_manifest(state, session, history, start), share=False
    )
    config = session.config
    with TrainingMonitor(
        show_progress, state.run.root.name, config.epochs, start, session.steps
    ) as monitor:
        for epoch in range(start + 1, config.epochs + 1):
            record = _train_one_epoch(session, epoch, monitor)
            if not (math.isfinite(record["train_loss"]) and math.isfinite(record["test_loss"])):
                _stop_diverged(state.run, state.cluster, epoch, record, config)
            history.append(record)
            dump_error = _checkpoint_features(session, state.run, epoch, monitor)
            state.cluster.agree(
                lambda epoch=epoch, error=dump_error: _end_epoch(
                    session, state.run, writer, history, epoch, error
                ),
                share=False,
            )
            monitor.epoch_done(record)
    state.cluster.agree(lambda: _finish(state.run, writer, manifest), share=False)
    return state.run


def _open_manifest(
    state: _Run, session: Session, history: list[dict[str, Any]], start: int
) -> dict[str, Any]:
    """A new run's manifest, or the resumed one's with this resume appended (rank 0)."""
    run = state.run
    with run_writes(run.root):
        if state.manifest is None:
            manifest = _new_manifest(session)
        else:
            manifest = dict(state.manifest)
            manifest["status"] = "running"
            manifest.pop("error", None)
            manifest.setdefault("resumes", []).append(
                {"at": now(), "from_epoch": start, "world_size": state.cluster.world}
                | state.resume_note
            )
        run.write_manifest(manifest)
        run.write_history(history)
        return manifest


def _train_one_epoch(session: Session, epoch: int, monitor: TrainingMonitor) -> dict[str, Any]:
    """Train one epoch, step the schedule, evaluate: the epoch's history record."""
    started = time.perf_counter()
    monitor.epoch_started(epoch)
    lr = session.optimizer.param_groups[0]["lr"]
    batches = session.epoch_input(epoch)
    loss_sum, correct = train_epoch(
        session.step_model,
        session.optimizer,
        batches,
        session.accel,
        session.cluster,
        on_steps=monitor.steps_done,
        objective=session.objective,
    )
    del batches  # the next epoch's input takes its place
    train_seconds = time.perf_counter() - started
    session.scheduler.step()
    test_loss, test_acc = evaluate(
        session.model,
        session.test_set,
        session.mean,
        session.std,
        session.accel,
        session.cluster,
        loss=session.objective.classify,
    )
    return {
        "epoch": epoch,
        "lr": lr,
        "train_loss": loss_sum / session.usable,
        "train_acc": correct / session.usable,
        "test_loss": test_loss,
        "test_acc": test_acc,
        "seconds": time.perf_counter() - started,
        "images_per_s": session.usable / train_seconds,
    }


def _checkpoint_features(
    session: Session, run: RunDir, epoch: int, monitor: TrainingMonitor
) -> OSError | None:
    """At a checkpoint epoch, the features dump (every rank computes its share). A write
    error is returned, to be raised by rank 0 inside the epoch's agreed end."""
    if epoch not in session.config.checkpoint_epochs:
        return None
    splits = splits_of(session.train_set, session.test_set, session.ood)
    total = sum(len(images) for images in splits.values())
    with monitor.features(total) as advance:
        try:
            dump_features(
                run.features(epoch),
                session.model,
                splits,
                session.mean,
                session.std,
                session.accel,
                session.cluster,
                with_stages=session.config.stage_features,
                metadata={"epoch": str(epoch), "dataset": session.ind.name, "run": run.root.name},
                on_batch=advance,
            )
        except OSError as exc:
            return exc
    return None


def _end_epoch(
    session: Session,
    run: RunDir,
    writer: StateWriter,
    history: list[dict[str, Any]],
    epoch: int,
    dump_error: OSError | None,
) -> None:
    """Rank 0: history, the weights at a checkpoint, then the resume state (in a thread)."""
    with run_writes(run.root):
        if dump_error is not None:
            raise dump_error
        run.write_history(history)
        if epoch in session.config.checkpoint_epochs:
            save_weights(session.model, run.checkpoint(epoch), epoch)
        writer.submit(
            snapshot(
                epoch,
                session.model,
                session.optimizer,
                session.scheduler,
                history,
                device=session.device,
            )
        )


def _finish(run: RunDir, writer: StateWriter, manifest: dict[str, Any]) -> None:
    with run_writes(run.root):
        writer.wait()
        manifest["status"] = "complete"
        manifest["finished"] = now()
        manifest["files"] = run.checksums()
        manifest["file_stats"] = run.file_stats(manifest["files"])
        run.write_manifest(manifest)


def _stop_diverged(
    run: RunDir, cluster: Cluster, epoch: int, record: dict[str, Any], config
) -> None:
    train_loss, test_loss = record["train_loss"], record["test_loss"]
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
            if isinstance(exc, OSError) and exc.errno in WRITE_ERRORS:
                raise os_error_line(exc, "the run is left as it was") from None
        raise NcoodError(message)

    cluster.agree(mark, share=False)
