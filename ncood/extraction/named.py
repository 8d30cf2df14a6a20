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

    weights: list[Path] = setting(
        help="Weights file(s): .safetensors, .pt, .pth, .ckpt; several = epochs. Or pretrained "
        "weights by name, from the library's cache: torchvision:ResNet50_Weights.IMAGENET1K_V2, "
        "timm:resnet50.a1_in1k.",
        metavar="FILE|NAME",
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
    model: str | None = setting(
        None,
        help="Architecture: resnet18-cifar, openood:resnet18_32x32, torchvision:NAME, "
        "timm:NAME, package.module:callable, or one a plugin registers (named --weights "
        "fix it: it may be left out).",
        metavar="ARCH",
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
        help="Images read from files: shorter side resized to N (default: the named weights', "
        "else the set's, 256).",
        metavar="N",
    )
    crop: int | None = setting(
        None,
        help="Images read from files: centre crop N×N after --resize (default: the named "
        "weights', else the set's, 224).",
        metavar="N",
    )
    normalize: str | None = setting(
        None,
        help="dataset (its mean/std), weights (the named weights' own), imagenet, or MEAN/STD "
        "(e.g. 0.5/0.25); default: weights with named weights, else dataset.",
        metavar="dataset|weights|imagenet|MEAN/STD",
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
    """Check every name and file before the slow steps, then write the run.

    Under torchrun every process runs this on its shards of each split (ncood.extraction.
    sharding); rank 0 writes the run and returns it, the others return None."""
    from ncood.datasets import check_names
    from ncood.engine.distributed import start_cluster, stop_cluster
    from ncood.extraction.imported import weights_epochs
    from ncood.extraction.preprocess import check_image_size, check_resize_crop
    from ncood.models.registry import model_registry

    named = _named_weights(request)
    request.model = named.model if named and request.model is None else request.model
    if request.model is None:
        raise NcoodError("give --model ARCH (named --weights such as torchvision:NAME fix it)")
    registry = model_registry()
    registry.resolve(request.model)  # an unknown architecture is reported before any data
    weights = [] if named else weights_epochs(request.weights, request.epochs)
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
    request.normalize = request.normalize or ("weights" if named else "dataset")
    if request.normalize == "weights" and named is None:
        raise NcoodError("--normalize weights: give named --weights (torchvision:…, timm:…)")
    cluster = start_cluster(request.device)
    try:
        return _extract(request, named, weights, cluster, show_progress and cluster.main)
    finally:
        stop_cluster(cluster)


def _extract(request: ExtractRequest, named, weights: list, cluster, show_progress: bool):
    from ncood.datasets import load_data
    from ncood.datasets.digest import split_digests
    from ncood.datasets.openood import benchmark_record
    from ncood.engine.accel import pick_device
    from ncood.engine.dump import forward_batch_size
    from ncood.extraction.imported import (
        ImportPlan,
        WeightsFile,
        follow_imported_run,
        prepare_out,
        write_imported_run,
    )
    from ncood.extraction.inputs import from_split
    from ncood.extraction.preprocess import parse_normalize
    from ncood.extraction.sharding import Shards
    from ncood.models.named_weights import cached_file, published_hash_prefix
    from ncood.models.registry import model_registry
    from ncood.progress import progress_bar

    cluster.agree(lambda: prepare_out(request.out, request.force), share=False)
    if named is not None:  # fetched once (rank 0 first), then found in the cache by every rank
        path = cluster.first(lambda: cached_file(named, request.download, show_progress))
        record = {**named.record(), "published_sha256_prefix": published_hash_prefix(path)}
        epoch = request.epochs[0] if request.epochs else 1
        weights = [WeightsFile(path, epoch, named=record)]
    device = pick_device(request.device, cluster)

    ind, ood_sets = cluster.first(
        lambda: load_data(
            request.dataset,
            request.ood,
            request.data_dir,
            download=request.download,
            show_progress=show_progress,
            files=True,
            benchmark=request.benchmark,
        )
    )
    classes = named.num_classes if named else request.num_classes or ind.num_classes
    if classes != ind.num_classes:
        given = f"{named.name} have {classes} classes" if named else f"--num-classes {classes}"
        raise NcoodError(
            f"{given}, but {ind.name} has {ind.num_classes} classes: ncood "
            f"measures the model on its own classes, so they must be the dataset's"
        )
    if request.normalize == "weights":
        kind, mean, std = "weights", named.preprocessing.mean, named.preprocessing.std
    else:
        kind, mean, std = parse_normalize(request.normalize, ind.mean, ind.std)
    preprocess = _preprocessing(request, named, ind, ood_sets, kind, mean, std)
    model = model_registry().create(request.model, classes, **request.model_args)

    splits = {"train": ind.train, "test": ind.test, **{f"ood/{n}": s for n, s in ood_sets.items()}}
    if request.limit is not None:
        splits = {name: _first_random(images, request.limit) for name, images in splits.items()}
    batch_size = request.batch_size or forward_batch_size(device)
    shards = Shards(cluster, batch_size, {name: len(s) for name, s in splits.items()})
    local = splits
    if cluster.distributed:
        local = {name: s.subset(shards.index(len(s))) for name, s in splits.items()}
    sources = {
        name: from_split(s, preprocess, batch_size, request.workers) for name, s in local.items()
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
    if not cluster.main:
        return follow_imported_run(model, plan, sources, device, weights=weights, shards=shards)
    per_pass = sum(shards.totals.values())
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
            shards=shards,
        )


def _preprocessing(request: ExtractRequest, named, ind, ood_sets, kind, mean, std):
    """A file-backed in-distribution set is read as ``--resize``/``--crop`` say (default: the
    named weights', else the set's); with an in-memory one, OOD folders are brought to its
    input size (``--image-size``, else the named weights' crop, else 32) the same way, so that
    every split reaches the model at one size."""
    from ncood.datasets import IMAGE_SIZE, ImageFiles
    from ncood.datasets.files import DEFAULT_CROP, DEFAULT_RESIZE
    from ncood.extraction.preprocess import Preprocessing, file_preprocessing

    if isinstance(ind.train, ImageFiles):
        if request.image_size is not None:
            raise NcoodError(
                f"--image-size resizes the 32-px in-memory sets; {ind.name} is read from its "
                f"files: give --resize and --crop"
            )
        published = named.preprocessing if named else None
        resize = request.resize or (published and published.resize) or ind.resize or DEFAULT_RESIZE
        crop = request.crop or (published and published.crop) or ind.crop or DEFAULT_CROP
        interpolation = published.interpolation if published else "bilinear"
        return file_preprocessing(resize, crop, mean, std, interpolation, normalize=kind)
    if request.resize is not None or request.crop is not None:
        raise NcoodError(
            f"--resize/--crop say how a file-backed in-distribution set is read; {ind.name} is "
            f"held in memory at 32 px: give --image-size"
        )
    image_size = request.image_size or (named.preprocessing.crop if named else None)
    if any(isinstance(s, ImageFiles) for s in ood_sets.values()):
        size = image_size or IMAGE_SIZE
        return file_preprocessing(size, size, mean, std, normalize=kind, image_size=image_size)
    return Preprocessing(image_size, kind, mean, std)


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


def _named_weights(request: ExtractRequest):
    """The pretrained weights ``--weights`` names (None for files); they fix the model."""
    from ncood.models.named_weights import is_weights_name, named_weights

    names = [str(p) for p in request.weights if is_weights_name(str(p))]
    if not names:
        return None
    if len(request.weights) > 1:
        raise NcoodError(
            f"--weights {names[0]} stands alone: give one weights name, or weights files"
        )
    named = named_weights(names[0])
    if request.model is not None and not _same_architecture(request.model, named.model):
        raise NcoodError(
            f"--weights {named.name} are {named.model}'s, not {request.model}'s: give "
            f"--model {named.model}, or leave --model out"
        )
    if request.num_classes is not None and request.num_classes != named.num_classes:
        raise NcoodError(
            f"--num-classes {request.num_classes}, but {named.name} have {named.num_classes}"
        )
    if request.epochs is not None and len(request.epochs) != 1:
        raise NcoodError(f"--epochs gives {len(request.epochs)} epochs for one weights name")
    return named


def _same_architecture(model: str, expected: str) -> bool:
    """``timm:resnet50.a1_in1k`` builds the architecture ``timm:resnet50``."""
    if model.startswith("timm:"):
        model = model.split(".", 1)[0]
    return model == expected


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
