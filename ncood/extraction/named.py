"""``ncood extract``'s work: an architecture by name, weights files, datasets by name → a run."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ncood.errors import NcoodError
from ncood.store.settings import recorded, setting

LIMIT_SEED = 0


@dataclass
class ExtractRequest:
    """What ``ncood extract`` is asked, declared once: its options (ncood/cli/extract.py) and
    what the run's manifest records of it (``record``) are derived from these fields."""

    model: str = setting(
        help="Architecture: resnet18-cifar, openood:resnet18_32x32, torchvision:NAME, "
        "timm:NAME, package.module:callable, or one a plugin registers.",
        metavar="ARCH",
    )
    weights: list[Path] = setting(
        help="Weights file(s): .safetensors, .pt, .pth, .ckpt; several = epochs.",
        metavar="FILE",
        given=list[Path],
    )
    out: Path = setting(help="Run directory to write.", metavar="RUN_DIR")
    dataset: str | None = setting(
        None,
        help="In-distribution dataset, as for `ncood train`, or folder:PATH (PATH/train and "
        "PATH/val with one folder per class, or ILSVRC-2012's layout; read at full "
        "resolution); or give --benchmark.",
        metavar="DATASET",
        record="dataset_spec",  # as given: the model-based scorers reload it
    )
    benchmark: str | None = setting(
        None,
        help="OpenOOD v1.5's protocol: openood:cifar10, openood:cifar100, "
        "openood:imagenet200 or openood:imagenet1k; sets the in-distribution and OOD sets "
        "(near/far groups, validation set) from OpenOOD's files under --data-dir "
        "(docs/benchmarks-openood.md).",
        metavar="openood:ID",
        record=True,
    )
    ood: list[str] = setting(
        [],
        help="OOD sets, comma-separated (svhn, dtd, folder:PATH, …).",
        metavar="SETS",
        record="ood_specs",
    )
    data_dir: Path | None = setting(
        None, help="Where the datasets live (default $NCOOD_DATA_DIR or ./data).", metavar="DIR"
    )
    num_classes: int | None = setting(
        None, help="The model's classes (must be the dataset's).", metavar="N"
    )
    image_size: int | None = setting(
        None, help="Resize images to SIZE×SIZE before normalizing.", metavar="SIZE", record=True
    )
    resize: int | None = setting(
        None,
        help="Images read from files: shorter side resized to N (default: the set's, 256).",
        metavar="N",
    )
    crop: int | None = setting(
        None,
        help="Images read from files: centre crop N×N after --resize (default: the set's, 224).",
        metavar="N",
    )
    normalize: str = setting(
        "dataset",
        help="dataset (its mean/std), imagenet, or MEAN/STD (e.g. 0.5/0.25).",
        metavar="dataset|imagenet|MEAN/STD",
        record=True,
    )
    feature_layer: str | None = setting(
        None,
        help="Module whose input (a Linear) or output gives the features.",
        metavar="MODULE",
        record=True,
    )
    batch_size: int | None = setting(None, help="Images per forward pass.", metavar="N")
    workers: int | None = setting(
        None,
        help="Processes decoding image files (default: one a core, at most 8).",
        metavar="N",
        minimum=0,
    )
    device: str = setting("auto", help="auto, cpu, cuda, cuda:1 …", metavar="DEVICE")
    epochs: list[int] | None = setting(
        None, help="Epochs of the weights files, in order: 10,20,30.", metavar="EPOCHS"
    )
    model_args: dict[str, Any] = setting(
        {},
        help="KEY=VALUE passed to the architecture (repeatable).",
        metavar="KEY=VALUE",
        name="--model-arg",
        given=list[str],
        parse=lambda pairs: parse_model_args(pairs),
    )
    limit: int | None = setting(
        None,
        help="At most N images per split (a fixed random subset).",
        metavar="N",
        record=True,
    )
    download: bool = setting(True, help="Download missing datasets when the network allows.")
    force: bool = setting(False, help="Replace an existing run in --out.")


def run_extract(request: ExtractRequest, show_progress: bool = True):
    """Check every name and file before the slow steps, then write the run."""
    from ncood.datasets import check_names, load_data
    from ncood.datasets.digest import split_digests
    from ncood.datasets.openood import benchmark_record
    from ncood.engine.accel import pick_device
    from ncood.engine.dump import forward_batch_size
    from ncood.extraction.imported import (
        ImportPlan,
        prepare_out,
        weights_epochs,
        write_imported_run,
    )
    from ncood.extraction.inputs import from_split
    from ncood.extraction.preprocess import check_image_size, check_resize_crop, parse_normalize
    from ncood.models.registry import model_registry
    from ncood.progress import progress_bar

    registry = model_registry()
    registry.resolve(request.model)  # an unknown architecture is reported before any data
    weights = weights_epochs(request.weights, request.epochs)
    for item in weights:
        if not item.path.is_file():
            raise NcoodError(f"weights file not found: {item.path}")
    request = _with_benchmark(request)
    check_names(request.dataset, request.ood, files=True, benchmark=request.benchmark)
    check_image_size(request.image_size)
    check_resize_crop(request.resize, request.crop)
    if request.limit is not None and request.limit < 1:
        raise NcoodError("--limit must be at least 1")
    if request.batch_size is not None and request.batch_size < 1:
        raise NcoodError("--batch-size must be at least 1")
    if request.workers is not None and request.workers < 0:
        raise NcoodError("--workers must be 0 (decode in this process) or more")
    prepare_out(request.out, request.force)
    device = pick_device(request.device)

    ind, ood_sets = load_data(
        request.dataset,
        request.ood,
        request.data_dir,
        download=request.download,
        show_progress=show_progress,
        files=True,
        benchmark=request.benchmark,
    )
    classes = request.num_classes or ind.num_classes
    if classes != ind.num_classes:
        raise NcoodError(
            f"--num-classes {classes}, but {ind.name} has {ind.num_classes} classes: ncood "
            f"measures the model on its own classes, so they must be the dataset's"
        )
    kind, mean, std = parse_normalize(request.normalize, ind.mean, ind.std)
    preprocess = _preprocessing(request, ind, ood_sets, kind, mean, std)
    model = registry.create(request.model, classes, **request.model_args)

    splits = {"train": ind.train, "test": ind.test, **{f"ood/{n}": s for n, s in ood_sets.items()}}
    if request.limit is not None:
        splits = {name: _first_random(images, request.limit) for name, images in splits.items()}
    batch_size = request.batch_size or forward_batch_size(device)
    sources = {
        name: from_split(s, preprocess, batch_size, request.workers) for name, s in splits.items()
    }
    plan = ImportPlan(
        arch=request.model,
        dataset={
            "name": ind.name,
            "num_classes": ind.num_classes,
            "train_size": len(splits["train"]),
            "test_size": len(splits["test"]),
            "ood": {name.removeprefix("ood/"): len(s) for name, s in splits.items() if "/" in name},
            "digests": split_digests(splits),
            **benchmark_record(request.benchmark),
        },
        preprocessing={**preprocess.describe(), "limit": request.limit},
        config={**recorded(request), "batch_size": batch_size},
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


def _preprocessing(request: ExtractRequest, ind, ood_sets, kind, mean, std):
    """A file-backed in-distribution set is read as ``--resize``/``--crop`` say (default: the
    set's); with an in-memory one, OOD folders are brought to its input size (``--image-size``
    or 32) the same way, so that every split reaches the model at one size."""
    from ncood.datasets import IMAGE_SIZE, ImageFiles
    from ncood.datasets.files import DEFAULT_CROP, DEFAULT_RESIZE
    from ncood.extraction.preprocess import Preprocessing, file_preprocessing

    if isinstance(ind.train, ImageFiles):
        if request.image_size is not None:
            raise NcoodError(
                f"--image-size resizes the 32-px in-memory sets; {ind.name} is read from its "
                f"files: give --resize and --crop"
            )
        resize = request.resize or ind.resize or DEFAULT_RESIZE
        crop = request.crop or ind.crop or DEFAULT_CROP
        return file_preprocessing(resize, crop, mean, std, normalize=kind)
    if request.resize is not None or request.crop is not None:
        raise NcoodError(
            f"--resize/--crop say how a file-backed in-distribution set is read; {ind.name} is "
            f"held in memory at 32 px: give --image-size"
        )
    if any(isinstance(s, ImageFiles) for s in ood_sets.values()):
        size = request.image_size or IMAGE_SIZE
        return file_preprocessing(
            size, size, mean, std, normalize=kind, image_size=request.image_size
        )
    return Preprocessing(request.image_size, kind, mean, std)


def _with_benchmark(request: ExtractRequest) -> ExtractRequest:
    """The request with ``--benchmark``'s sets as its dataset and OOD sets (so the run
    records them, and the model-based scorers reload them); a dataset is needed otherwise."""
    if request.benchmark is None:
        if request.dataset is None:
            raise NcoodError("give --dataset (or --benchmark openood:ID)")
        return request
    from ncood.datasets.openood import benchmark_sets

    dataset, ood = benchmark_sets(request.benchmark, request.dataset, request.ood)
    return dataclasses.replace(request, dataset=dataset, ood=ood)


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
