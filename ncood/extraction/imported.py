"""An imported run: one features file per checkpoint of a model trained outside ncood.

The run is written in a hidden folder beside ``out`` and renamed into place once every
features file and the manifest are complete, so a failure (a key mismatch at the third
checkpoint, Ctrl-C) leaves ``out`` as it was. The manifest says ``source: imported`` and
records the architecture, each weights file with its sha256, the dataset, the preprocessing
and the versions; there is no ``history.json`` (ncood did not see the training).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ncood.errors import NcoodError
from ncood.extraction.inputs import Source
from ncood.extraction.sharding import Shards
from ncood.extraction.stream import extract_features
from ncood.models.capture import choose_head
from ncood.models.weights import fit_weights, read_checkpoint
from ncood.store.manifest import IMPORTED, new_manifest, now
from ncood.store.run import RunDir, sha256
from ncood.store.run_cleanup import foreign_files, is_ncood_run

_EPOCH_WORD = re.compile(r"(?i)(?:^|[^a-z])(?:epoch|ep|e)[_=-]?(\d+)")
_NUMBER = re.compile(r"\d+")


@dataclass(frozen=True)
class WeightsFile:
    path: Path
    epoch: int
    named: dict[str, Any] | None = None  # pretrained weights by name: what the manifest records


@dataclass
class ImportPlan:
    """Everything the run records besides what extraction measures."""

    arch: str
    dataset: dict[str, Any]  # name, num_classes, train_size, test_size, ood sizes
    preprocessing: dict[str, Any]
    config: dict[str, Any]  # the extraction's own settings (batch size, feature layer, …)
    feature_layer: str | None = None
    model_args: dict[str, Any] = field(default_factory=dict)


def weights_epochs(paths: list[Path], epochs: list[int] | None = None) -> list[WeightsFile]:
    """Each file's epoch, from ``epochs`` or read from its name (``epoch_10.pth``, ``e3.pt``;
    among several files, the last number of each name); sorted by epoch."""
    if not paths:
        raise NcoodError("give at least one weights file")
    if epochs is not None:
        if len(epochs) != len(paths):
            raise NcoodError(f"--epochs gives {len(epochs)} epochs for {len(paths)} weights files")
        found = list(epochs)
    else:
        found = [_epoch_from_name(p, several=len(paths) > 1) for p in paths]
        if None in found:
            unread = next(p for p, e in zip(paths, found, strict=True) if e is None)
            raise NcoodError(
                f"cannot read an epoch from {unread.name!r}; give them with --epochs 10,20,…"
            )
    if min(found) < 0:
        raise NcoodError("epochs must be ≥ 0")
    if len(set(found)) != len(found):
        raise NcoodError(
            f"two weights files have the same epoch ({sorted(found)}); give --epochs 10,20,…"
        )
    return sorted(
        (WeightsFile(Path(p), int(e)) for p, e in zip(paths, found, strict=True)),
        key=lambda w: w.epoch,
    )


def _epoch_from_name(path: Path, several: bool) -> int | None:
    stem = Path(path).stem
    marked = _EPOCH_WORD.findall(stem)
    if marked:
        return int(marked[-1])
    numbers = _NUMBER.findall(stem)
    if several and numbers:
        return int(numbers[-1])
    return None if several else 1  # one file without an epoch in its name: epoch 1


def prepare_out(out: Path, force: bool) -> None:
    """Refuse, before any work, to replace something that is not ours to replace."""
    if out.exists() and not out.is_dir():
        raise NcoodError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise NcoodError(f"--out {out} is not empty; give --force to replace it")
        if not is_ncood_run(out):  # --force replaces ncood runs only, never any folder
            raise NcoodError(
                f"--out {out} is not an ncood run; --force only replaces ncood runs "
                f"(use another --out)"
            )
        foreign = foreign_files(out)
        if foreign:
            more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
            raise NcoodError(
                f"--out {out} holds files that are not ncood's ({foreign[0].relative_to(out)}"
                f"{more}); --force would delete them: move them, or use another --out"
            )


def write_imported_run(
    out: str | Path,
    model: torch.nn.Module,
    plan: ImportPlan,
    sources: dict[str, Source],
    device: torch.device,
    *,
    weights: list[WeightsFile] | None = None,
    epoch: int = 1,
    force: bool = False,
    on_batch: Callable[[int], None] | None = None,
    on_checkpoint: Callable[[int], None] | None = None,
    shards: Shards | None = None,
) -> RunDir:
    """Extract ``model`` at each of ``weights`` (or as it is, as ``epoch``) into ``out``.

    Under torchrun this is rank 0's part; the others run :func:`follow_imported_run`."""
    from ncood.engine.train import versions

    out = Path(out)
    prepare_out(out, force)
    choice = choose_head(model, plan.feature_layer)
    model.to(device)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.extract-", dir=out.parent))
    try:
        run = RunDir(staging)
        created = now()
        records, evaluation = [], []
        for item in weights or [None]:
            this_epoch = epoch if item is None else item.epoch
            if on_checkpoint is not None:
                on_checkpoint(this_epoch)
            if item is not None:
                checkpoint = read_checkpoint(item.path)
                notes = fit_weights(model, checkpoint, plan.arch, head=choice.head_name)
                model.to(device)
                records.append(
                    {
                        **(item.named or {}),
                        "file": os.path.abspath(item.path),  # found from any folder
                        "epoch": item.epoch,
                        "sha256": sha256(item.path),
                        "adapted": notes,
                    }
                )
            extracted = extract_features(
                run.features(this_epoch),
                model,
                choice,
                sources,
                device,
                metadata={
                    "epoch": str(this_epoch),
                    "dataset": str(plan.dataset["name"]),
                    "run": out.name,
                    "source": IMPORTED,
                },
                on_batch=on_batch,
                shards=shards,
            )
            evaluation.append(
                {
                    "epoch": this_epoch,
                    **{f"{split}_acc": acc for split, acc in extracted.accuracy.items()},
                    "affine_error": extracted.affine_error,
                }
            )
        epochs = [e["epoch"] for e in evaluation]
        files = run.checksums()
        manifest = new_manifest(
            source=IMPORTED,
            status="complete",
            created=created,
            finished=now(),
            config={
                "source": IMPORTED,
                "model": plan.arch,
                "dataset": plan.dataset["name"],
                "ood": list(plan.dataset.get("ood", {})),
                "epochs": max(epochs),
                "checkpoint_epochs": epochs,
                **plan.config,
            },
            versions=versions(),
            device=str(device),
            dataset={
                **plan.dataset,
                "mean": plan.preprocessing.get("mean"),
                "std": plan.preprocessing.get("std"),
            },
            preprocessing=plan.preprocessing,
            model={
                "name": plan.arch,
                "class": f"{type(model).__module__}.{type(model).__qualname__}",
                "arguments": plan.model_args,
                "num_classes": int(choice.head.out_features),
                "feature_dim": int(choice.head.in_features),
                "head": choice.head_name,
                "features": choice.describe(),
                "parameters": sum(p.numel() for p in model.parameters()),
            },
            weights=records,
            evaluation=evaluation,
            files=files,
            file_stats=run.file_stats(files),
        )
        run.write_manifest(manifest)
        _move_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return RunDir(out)


def follow_imported_run(
    model: torch.nn.Module,
    plan: ImportPlan,
    sources: dict[str, Source],
    device: torch.device,
    *,
    weights: list[WeightsFile],
    shards: Shards,
) -> None:
    """A rank other than 0 under torchrun: the same passes over its shards; rank 0 writes."""
    choice = choose_head(model, plan.feature_layer)
    model.to(device)
    for item in weights:
        fit_weights(model, read_checkpoint(item.path), plan.arch, head=choice.head_name)
        model.to(device)
        extract_features(None, model, choice, sources, device, shards=shards)


def _move_into_place(staging: Path, out: Path) -> None:
    """Rename the finished run onto ``out``; an old run there goes only once the new is in."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.replaced-{staging.name.rsplit('-', 1)[-1]}"
        out.rename(old)
    try:
        staging.rename(out)
    except BaseException:
        if old is not None:
            old.rename(out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
