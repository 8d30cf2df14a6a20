"""A run's network and data, rebuilt for the model-based scorers (ncood.host.network).

A trained run has its weights in ``checkpoints/`` and its data in its configuration (dataset,
OOD sets, train subset, seed); an imported run records its architecture, each weights file
(with its sha256), the preprocessing and the ``--limit`` subset. Either way the images come
back in the order of the features file, preprocessed as they were, so that every scorer's
scores describe the same samples (the driver checks the labels). A features file alone, or a
run imported from a Python object (``ncood.extract``, no weights file), has no network to
rebuild: :func:`check_rebuildable` says so in one line, before any work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ncood.errors import NcoodError
from ncood.host.network import Batches, ModelInputs, Network
from ncood.store.manifest import is_imported
from ncood.store.run import RunDir, sha256

PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise NcoodError(f"--precision {precision!r}: give one of {', '.join(PRECISIONS)}")


def check_rebuildable(
    run: RunDir, epoch: int, model: str | None = None, *, verify: bool = False
) -> str:
    """Where the weights of ``epoch`` come from; a one-line error if ncood cannot rebuild it.

    ``model`` is the architecture as the user names it (``--model``): it must be the one the
    manifest records, and is the only way a ``package.module:callable`` recorded there is
    imported (ncood.host.model_records). Nothing is imported before a refusal. With ``verify``
    (``analyze --verify``), the weights file's sha256 is checked against its record too, as the
    features files' are (size and modification time can be kept).
    """
    manifest = run.manifest()
    recorded = (manifest.get("model") or {}).get("name")
    if is_imported(manifest):
        record = _weights_record(run, manifest, epoch)
        _check_architecture(run, manifest, model)
        path = _weights_path(run, record)
        if not path.is_file():
            raise NcoodError(
                f"the weights of epoch {epoch} ({path}) are gone; model-based scorers need "
                f"them (the run was imported from that file)"
            )
        if verify:
            _check_imported_weights(path, record, epoch)
        return str(path)
    if model is not None and model != recorded:
        raise NcoodError(
            f"--model {model!r}, but {run.root} was trained by ncood as {recorded!r}: leave "
            f"--model out"
        )
    path = run.checkpoint(epoch)
    if not path.is_file():
        raise NcoodError(
            f"{run.root} has no checkpoint for epoch {epoch} ({path.name}); model-based "
            f"scorers need the weights"
        )
    if verify:
        from ncood.store.integrity import verify_files

        verify_files(run, [str(path.relative_to(run.root))], full=True)
    return str(path)


def _check_architecture(run: RunDir, manifest: dict[str, Any], model: str | None):
    from ncood.models.registry import check_recorded, model_registry

    info = manifest.get("model") or {}
    return check_recorded(
        model_registry(),
        info.get("name"),
        info.get("arguments"),
        named=model,
        where=str(run.root),
        base=run.root,
    )


def _check_imported_weights(path: Path, record: dict[str, Any], epoch: int) -> None:
    if record.get("sha256") and sha256(path) != record["sha256"]:
        raise NcoodError(
            f"{path} changed since it was imported (its sha256 differs): the features of "
            f"epoch {epoch} come from other weights; extract the run again"
        )


def _weights_record(run: RunDir, manifest: dict[str, Any], epoch: int) -> dict[str, Any]:
    records = [r for r in manifest.get("weights") or [] if isinstance(r, dict)]
    if not records:
        raise NcoodError(
            f"{run.root} was imported from a Python model (ncood.extract), so ncood holds no "
            f"weights to rebuild it: model-based scorers run on trained runs and on runs "
            f"imported from weights files (ncood extract)"
        )
    for record in records:
        if record.get("epoch") == epoch and isinstance(record.get("file"), str):
            return record
    raise NcoodError(f"{run.root} records no weights file for epoch {epoch}")


def _weights_path(run: RunDir, record: dict[str, Any]) -> Path:
    """The weights file a record names. Runs record it absolute; older runs recorded it as
    given, relative to where ``ncood extract`` ran: looked for from here, then from the run's
    folder and each folder above it (the sha256 then says whether it is the same file)."""
    path = Path(record["file"])
    if path.is_absolute():
        return path
    candidates = [path, *(folder / path for folder in [run.root, *run.root.absolute().parents])]
    return next((c for c in candidates if c.is_file()), path)


@dataclass(frozen=True)
class RunData:
    """A run's images, split as in its features files, and how they become model inputs."""

    splits: dict[str, Any]  # "train", "test", "ood/<set>" → ImageSet (uint8) or ImageFiles
    transform: Callable[[torch.Tensor], torch.Tensor]  # uint8 batch → model-ready float32
    std: tuple[float, ...]  # the normalization's per-channel std
    preprocess: Any = None  # the Preprocessing that decodes the ImageFiles splits


def load_run_data(
    run: RunDir, data_dir: str | Path | None = None, show_progress: bool = False
) -> RunData:
    """The run's data, once for all its epochs (one line if it is missing or not the run's)."""
    manifest = run.manifest()
    load = _imported_data if is_imported(manifest) else _trained_data
    data = load(manifest, data_dir, show_progress)
    _check_sizes(run, manifest, data.splits)
    return data


def open_model_inputs(
    run: RunDir,
    epoch: int,
    *,
    device: torch.device,
    data: RunData | None = None,
    data_dir: str | Path | None = None,
    batch_size: int | None = None,
    precision: str = "fp32",
    show_progress: bool = False,
    model: str | None = None,
) -> ModelInputs:
    """The network of ``epoch`` on ``device`` and the batches of every split of the run;
    ``model`` names the architecture again when the run records your own code (--model)."""
    from ncood.engine.dump import forward_batch_size

    check_precision(precision)
    manifest = run.manifest()
    where = check_rebuildable(run, epoch, model)
    data = data or load_run_data(run, data_dir, show_progress)
    if is_imported(manifest):
        module, head_name = _imported_model(run, manifest, epoch, model)
    else:
        module, head_name = _trained_model(run, manifest, epoch)
    module.to(device).eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)  # input gradients only (ODIN): no weight grads kept
    size = batch_size or forward_batch_size(device)
    batches = {
        name: _batches(name, images, data, device, size) for name, images in data.splits.items()
    }
    sample = next(iter(batches["test"].produce()))[0][:2]
    network = Network(
        module=module,
        device=device,
        head_name=head_name,
        stages=find_stages(module, head_name, sample),
        input_std=tuple(float(s) for s in data.std),
        arch=str(manifest.get("model", {}).get("name", "")),
    )
    return ModelInputs(
        network=network,
        splits=batches,
        precision=_precision(precision, device),
        describe={
            "device": str(device),
            "precision": precision,
            "batch_size": size,
            "weights": where,
        },
    )


def _trained_data(manifest, data_dir, show_progress: bool) -> RunData:
    from ncood.datasets import load_data, normalize
    from ncood.engine.presets import TrainConfig
    from ncood.engine.session import train_subset_index

    config = TrainConfig.from_dict(manifest.get("config") or {})
    ind, ood = load_data(
        config.dataset,
        config.ood,
        data_dir or config.data_dir,
        download=False,
        show_progress=show_progress,
        benchmark=config.benchmark,
    )
    train = ind.train
    if config.train_subset:
        train = train.subset(train_subset_index(len(train), config.train_subset, config.seed))
    splits = {"train": train, "test": ind.test, **{f"ood/{n}": s for n, s in ood.items()}}
    mean = torch.tensor(ind.mean, dtype=torch.float32)
    std = torch.tensor(ind.std, dtype=torch.float32)

    def transform(batch: torch.Tensor) -> torch.Tensor:
        return normalize(batch, mean.to(batch.device), std.to(batch.device))

    return RunData(splits, transform, tuple(ind.std))


def _trained_model(run: RunDir, manifest, epoch: int):
    from ncood.engine.presets import TrainConfig
    from ncood.engine.resnet import network_for
    from ncood.models.weights import fit_weights, read_checkpoint
    from ncood.store.integrity import verify_files

    config = TrainConfig.from_dict(manifest.get("config") or {})
    verify_files(run, [str(run.checkpoint(epoch).relative_to(run.root))])
    model = network_for(config, int(manifest["dataset"]["num_classes"]))
    fit_weights(model, read_checkpoint(run.checkpoint(epoch)), "resnet18-cifar", head="fc")
    return model, "fc"


def _imported_data(manifest, data_dir, show_progress: bool) -> RunData:
    from ncood.datasets import load_data
    from ncood.extraction.named import _first_random
    from ncood.extraction.preprocess import Preprocessing

    config = manifest.get("config") or {}
    recorded = manifest.get("preprocessing") or {}
    # a run that read sets from files records their resize and crop (runs before did not, and
    # read OOD folders at 32 px in memory: they are read so again)
    from_files = isinstance(recorded.get("resize"), int) and isinstance(recorded.get("crop"), int)
    ind, ood = load_data(
        config.get("dataset_spec") or config.get("dataset"),
        list(config.get("ood_specs") or config.get("ood") or []),
        data_dir,
        download=False,
        show_progress=show_progress,
        files=from_files,
        benchmark=config.get("benchmark"),
    )
    splits = {"train": ind.train, "test": ind.test, **{f"ood/{n}": s for n, s in ood.items()}}
    limit = config.get("limit")
    if limit is not None:
        splits = {name: _first_random(images, int(limit)) for name, images in splits.items()}
    preprocess = Preprocessing(
        recorded.get("image_size"),
        str(recorded.get("normalize", "explicit")),
        tuple(recorded.get("mean") or ind.mean),
        tuple(recorded.get("std") or ind.std),
        recorded.get("resize") if from_files else None,
        recorded.get("crop") if from_files else None,
        str(recorded.get("interpolation") or "bilinear"),
    )
    return RunData(splits, preprocess.apply, tuple(preprocess.std), preprocess)


def _imported_model(run: RunDir, manifest, epoch: int, model: str | None = None):
    from ncood.models.registry import model_registry, rebuild_recorded
    from ncood.models.weights import fit_weights, read_checkpoint

    record = _weights_record(run, manifest, epoch)
    path = _weights_path(run, record)
    _check_imported_weights(path, record, epoch)
    model_info = manifest.get("model") or {}
    arch = model_info.get("name")
    module = rebuild_recorded(
        model_registry(),
        arch,
        model_info.get("num_classes"),
        model_info.get("arguments"),
        named=model,
        where=str(run.root),
        base=run.root,
    )
    fit_weights(module, read_checkpoint(path), arch, head=model_info.get("head"))
    return module, str(model_info.get("head") or "")


def _check_sizes(run: RunDir, manifest, splits) -> None:
    """The data must be the data the features were extracted from: the same sizes, and the
    same images where the manifest records their digests (runs made before it did not; the
    driver compares the labels too)."""
    from ncood.datasets import folder_path, ood_name

    recorded = manifest.get("dataset") or {}
    expected = {
        "train": recorded.get("train_size"),
        "test": recorded.get("test_size"),
        **{f"ood/{n}": size for n, size in (recorded.get("ood") or {}).items()},
    }
    config = manifest.get("config") or {}
    specs = config.get("ood_specs") or config.get("ood") or []
    folders = {f"ood/{ood_name(s)}": folder_path(s) for s in specs if folder_path(s)}
    for name, images in splits.items():
        if expected.get(name) is None or expected[name] == len(images):
            continue
        if name in folders:  # --data-dir has no say over a folder given by its path
            raise NcoodError(
                f"the OOD folder {folders[name]} holds {len(images)} images but held "
                f"{expected[name]} when {run.root} was made: images were removed or added "
                f"since; put them back or extract the run again"
            )
        raise NcoodError(
            f"split {name!r} has {len(images)} images here but {expected[name]} in "
            f"{run.root}'s manifest: not the data the run used (give --data-dir)"
        )
    digests = recorded.get("digests")
    if not isinstance(digests, dict):
        return
    from ncood.datasets.digest import image_digest

    for name, images in splits.items():
        if not isinstance(digests.get(name), str) or digests[name] == image_digest(images):
            continue
        if name in folders:
            raise NcoodError(
                f"the OOD folder {folders[name]} holds other images than when {run.root} was "
                f"made (same count, other pixels: their digest differs); put them back or "
                f"extract the run again"
            )
        raise NcoodError(
            f"the images of split {name!r} are not those {run.root} was made from (same "
            f"count, other pixels: their digest differs); restore them or give --data-dir"
        )


def _batches(name: str, images, data: RunData, device: torch.device, size: int) -> Batches:
    from ncood.datasets import ImageFiles
    from ncood.extraction.inputs import decode_files

    def chunks() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if isinstance(images, ImageFiles):  # decoded as the extraction did (its Preprocessing)
            yield from decode_files(images, data.preprocess, size, device)
            return
        for start in range(0, len(images), size):
            chunk = images.images[start : start + size].to(device, non_blocking=True)
            yield chunk, images.labels[start : start + size]

    def produce() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for chunk, labels in chunks():
            yield data.transform(chunk).contiguous(), labels.to(device)

    return Batches(name, len(images), images.labels.numpy().astype("int64"), produce)


def find_stages(module: torch.nn.Module, head_name: str, sample: torch.Tensor) -> list[str]:
    """The modules whose outputs are the network's stage maps (ResNet: layer1 … layer4).

    Below the root (and below a single container child, as DenseNet's ``features``), the child
    containers whose output is N×C×H×W, in the order the forward runs them.
    """
    root, prefix = module, ""
    while True:
        containers = [(n, m) for n, m in root.named_children() if any(True for _ in m.children())]
        if len(containers) == 1 and f"{prefix}{containers[0][0]}" != head_name:
            name, root = containers[0]
            prefix = f"{prefix}{name}."
            continue
        break
    order: list[str] = []
    handles = [
        child.register_forward_hook(
            lambda _m, _i, out, _n=f"{prefix}{name}": (
                order.append(_n) if isinstance(out, torch.Tensor) and out.ndim == 4 else None
            )
        )
        for name, child in containers
        if f"{prefix}{name}" != head_name
    ]
    try:
        with torch.no_grad():
            module(sample)
    finally:
        for handle in handles:
            handle.remove()
    return list(dict.fromkeys(order))


def _precision(precision: str, device: torch.device) -> Callable[[], Any]:
    from ncood.engine.accel import exact_fp32

    if precision == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return exact_fp32
