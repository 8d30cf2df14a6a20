"""``ncood extract``'s work: an architecture by name, weights files, datasets by name → a run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ncood.errors import NcoodError

LIMIT_SEED = 0


@dataclass
class ExtractRequest:
    """The command's options, as the command line gives them."""

    model: str
    weights: list[Path]
    dataset: str
    ood: list[str]
    out: Path
    data_dir: Path | None = None
    num_classes: int | None = None
    image_size: int | None = None
    normalize: str = "dataset"
    feature_layer: str | None = None
    batch_size: int | None = None
    device: str = "auto"
    epochs: list[int] | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    limit: int | None = None
    download: bool = True
    force: bool = False


def run_extract(request: ExtractRequest, show_progress: bool = True):
    """Check every name and file before the slow steps, then write the run."""
    from ncood.datasets import check_names, load_data
    from ncood.datasets.digest import split_digests
    from ncood.engine.accel import pick_device
    from ncood.engine.dump import forward_batch_size
    from ncood.extraction.imported import (
        ImportPlan,
        prepare_out,
        weights_epochs,
        write_imported_run,
    )
    from ncood.extraction.inputs import from_image_set
    from ncood.extraction.preprocess import Preprocessing, check_image_size, parse_normalize
    from ncood.models.registry import model_registry
    from ncood.progress import progress_bar

    registry = model_registry()
    registry.resolve(request.model)  # an unknown architecture is reported before any data
    weights = weights_epochs(request.weights, request.epochs)
    for item in weights:
        if not item.path.is_file():
            raise NcoodError(f"weights file not found: {item.path}")
    check_names(request.dataset, request.ood)
    check_image_size(request.image_size)
    if request.limit is not None and request.limit < 1:
        raise NcoodError("--limit must be at least 1")
    if request.batch_size is not None and request.batch_size < 1:
        raise NcoodError("--batch-size must be at least 1")
    prepare_out(request.out, request.force)
    device = pick_device(request.device)

    ind, ood_sets = load_data(
        request.dataset,
        request.ood,
        request.data_dir,
        download=request.download,
        show_progress=show_progress,
    )
    classes = request.num_classes or ind.num_classes
    if classes != ind.num_classes:
        raise NcoodError(
            f"--num-classes {classes}, but {ind.name} has {ind.num_classes} classes: ncood "
            f"measures the model on its own classes, so they must be the dataset's"
        )
    kind, mean, std = parse_normalize(request.normalize, ind.mean, ind.std)
    preprocess = Preprocessing(request.image_size, kind, mean, std)
    model = registry.create(request.model, classes, **request.model_args)

    splits = {"train": ind.train, "test": ind.test, **{f"ood/{n}": s for n, s in ood_sets.items()}}
    if request.limit is not None:
        splits = {name: _first_random(images, request.limit) for name, images in splits.items()}
    batch_size = request.batch_size or forward_batch_size(device)
    sources = {name: from_image_set(s, preprocess, batch_size) for name, s in splits.items()}
    plan = ImportPlan(
        arch=request.model,
        dataset={
            "name": ind.name,
            "num_classes": ind.num_classes,
            "train_size": len(splits["train"]),
            "test_size": len(splits["test"]),
            "ood": {name.removeprefix("ood/"): len(s) for name, s in splits.items() if "/" in name},
            "digests": split_digests(splits),
        },
        preprocessing={**preprocess.describe(), "limit": request.limit},
        config={
            "dataset_spec": request.dataset,  # as given: the model-based scorers reload it
            "ood_specs": list(request.ood),
            "batch_size": batch_size,
            "feature_layer": request.feature_layer,
            "image_size": request.image_size,
            "normalize": request.normalize,
            "limit": request.limit,
        },
        feature_layer=request.feature_layer,
        model_args=dict(request.model_args),
    )
    per_pass = sum(s.count for s in sources.values())
    with progress_bar(show_progress) as progress:
        task = progress.add_task("extract", total=per_pass * len(weights), status="")
        return write_imported_run(
            request.out,
            model,
            plan,
            sources,
            device,
            weights=weights,
            force=request.force,
            on_batch=lambda n: progress.advance(task, n),
            on_checkpoint=lambda e: progress.update(task, status=f"epoch {e}"),
        )


def _first_random(images, limit: int):
    """A fixed random subset of at most ``limit`` images, in their original order."""
    import torch

    if len(images) <= limit:
        return images
    generator = torch.Generator().manual_seed(LIMIT_SEED)
    index = torch.randperm(len(images), generator=generator)[:limit].sort().values
    return images.subset(index)


def parse_model_args(pairs: list[str]) -> dict[str, Any]:
    """``--model-arg KEY=VALUE``: ints, floats, true/false and none are converted."""
    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, eq, text = pair.partition("=")
        if not eq or not key.strip().isidentifier():
            raise NcoodError(f"--model-arg {pair!r}: expected KEY=VALUE, e.g. width=8")
        parsed[key.strip()] = _literal(text.strip())
    return parsed


def _literal(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text
