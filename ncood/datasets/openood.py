"""OpenOOD v1.5's four benchmarks by name (``--benchmark openood:cifar100``), read from the
files OpenOOD's download script lays out under the data folder.

The protocol tables here are those of OpenOOD's evaluator (``DATA_INFO`` in
openood/evaluation_api/datasets.py, v1.5): each benchmark's in-distribution lists, its near-
and far-OOD test sets, the OOD validation set its hyper-parameter search uses, and its test
preprocessing (openood/evaluation_api/preprocessor.py: resize the shorter side to
``pre_size``, centre-crop ``img_size``, normalise). A list file holds one ``relative/path
label`` per line, the path relative to ``images_classic/`` or ``images_largescale/``.

One difference of naming: OpenOOD's CIFAR benchmarks call the DTD set ``texture`` (list
``test_texture.txt``) and its ImageNet ones ``textures``; ncood calls it ``textures`` in all four.
The validation sets are named after their list files: ``val_tin``, ``val_openimage_o``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ncood.datasets.normalization import IMAGENET_MEAN, IMAGENET_STD
from ncood.errors import NcoodError

PREFIX = "openood:"
LISTS = "benchmark_imglist"
CLASSIC = "images_classic"
LARGESCALE = "images_largescale"
# where the files come from, for the one-line errors
DOWNLOAD_HINT = (
    "OpenOOD's scripts/download/download.py --contents datasets --datasets ood_v1.5 "
    "--save_dir DIR lays them out; pass --data-dir DIR"
)


@dataclass(frozen=True)
class Listed:
    """One image list of OpenOOD and the image folder its paths are relative to."""

    list_file: str  # relative to the data folder: benchmark_imglist/cifar100/test_tin.txt
    images: str  # images_classic or images_largescale


@dataclass(frozen=True)
class Benchmark:
    """One OpenOOD v1.5 benchmark: its in-distribution set, OOD sets and preprocessing."""

    name: str  # openood:cifar100
    dataset: str  # the in-distribution set's name in a run: cifar100
    num_classes: int
    train: Listed
    test: Listed
    near: dict[str, Listed]
    far: dict[str, Listed]
    validation: str  # the OOD validation set's name in a run
    validation_list: Listed
    resize: int  # OpenOOD's pre_size: the shorter side
    crop: int  # OpenOOD's img_size: the centre crop
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def test_sets(self) -> list[str]:
        return [*self.near, *self.far]

    @property
    def ood(self) -> list[str]:
        """The OOD sets a run of this benchmark holds: the test sets, then the validation set."""
        return [*self.test_sets, self.validation]

    @property
    def groups(self) -> dict[str, list[str]]:
        return {"near": list(self.near), "far": list(self.far)}

    def ood_list(self, name: str) -> Listed | None:
        if name == self.validation:
            return self.validation_list
        return self.near.get(name) or self.far.get(name)

    def record(self) -> dict:
        """What a run's manifest records of it (``dataset.benchmark``): ``ncood analyze`` takes
        its groups and validation set as defaults."""
        return {"name": self.name, "groups": self.groups, "validation": self.validation}


def _cifar(name: str, other: str, mean, std) -> Benchmark:
    def listed(stem: str) -> Listed:
        return Listed(f"{LISTS}/{name}/{stem}.txt", CLASSIC)

    return Benchmark(
        name=PREFIX + name,
        dataset=name,
        num_classes=int(name.removeprefix("cifar")),
        train=listed(f"train_{name}"),
        test=listed(f"test_{name}"),
        near={other: listed(f"test_{other}"), "tin": listed("test_tin")},
        far={
            "mnist": listed("test_mnist"),
            "svhn": listed("test_svhn"),
            "textures": listed("test_texture"),
            "places365": listed("test_places365"),
        },
        validation="val_tin",
        validation_list=listed("val_tin"),
        resize=32,
        crop=32,
        mean=mean,
        std=std,
    )


def _imagenet(name: str, folder: str, stem: str, classes: int) -> Benchmark:
    def listed(list_stem: str, images: str = LARGESCALE) -> Listed:
        return Listed(f"{LISTS}/{folder}/{list_stem}.txt", images)

    return Benchmark(
        name=PREFIX + name,
        dataset=name,
        num_classes=classes,
        train=listed(f"train_{stem}"),
        test=listed(f"test_{stem}"),
        near={"ssb_hard": listed("test_ssb_hard"), "ninco": listed("test_ninco")},
        far={
            "inaturalist": listed("test_inaturalist"),
            "textures": listed("test_textures", CLASSIC),
            "openimage_o": listed("test_openimage_o"),
        },
        validation="val_openimage_o",
        validation_list=listed("val_openimage_o"),
        resize=256,
        crop=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        _cifar("cifar10", "cifar100", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
        _cifar("cifar100", "cifar10", (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
        _imagenet("imagenet1k", "imagenet", "imagenet", 1000),
        _imagenet("imagenet200", "imagenet200", "imagenet200", 200),
    )
}

# other names of a benchmark's in-distribution set (OpenOOD's own id for ImageNet-1K)
ALIASES = {"imagenet": "imagenet1k"}

# The OOD sets registered by name (plugins/datasets/openood.py), with what they are.
NAMED_SETS = {
    "tin": "TinyImageNet (OpenOOD's list; near-OOD for CIFAR)",
    "places365": "Places365 (OpenOOD's list; far-OOD for CIFAR)",
    "ssb_hard": "SSB-hard (OpenOOD's list; near-OOD for ImageNet)",
    "ninco": "NINCO (OpenOOD's list; near-OOD for ImageNet)",
    "inaturalist": "iNaturalist (OpenOOD's list; far-OOD for ImageNet)",
    "textures": "Textures, DTD (OpenOOD's list; far-OOD in every benchmark)",
    "openimage_o": "OpenImage-O (OpenOOD's list; far-OOD for ImageNet)",
}


def benchmark(name: str) -> Benchmark:
    """A benchmark by its name, or one line listing those that exist."""
    found = BENCHMARKS.get(name)
    if found is None:
        raise NcoodError(f"unknown benchmark {name!r} (known: {', '.join(BENCHMARKS)})")
    return found


def trainable(name: str) -> Benchmark:
    """A benchmark ``ncood train`` can train on: its images are CIFAR-sized."""
    found = benchmark(name)
    if found.crop != 32:
        cifar = ", ".join(b.name for b in BENCHMARKS.values() if b.crop == 32)
        raise NcoodError(
            f"ncood train trains on 32-px images: --benchmark {name} is for ncood extract "
            f"(train with {cifar})"
        )
    return found


def benchmark_sets(
    name: str, dataset: str | None, ood: list[str] | None, *, training: bool = False
) -> tuple[str, list[str]]:
    """``--benchmark``'s in-distribution set and OOD sets (its test sets, then its validation
    set). It says both, so a ``--dataset`` or ``--ood`` given with it is refused."""
    found = trainable(name) if training else benchmark(name)
    given = [option for option, value in (("--dataset", dataset), ("--ood", ood)) if value]
    if given:
        raise NcoodError(
            f"--benchmark {name} sets the in-distribution and OOD sets: drop {' and '.join(given)}"
        )
    return found.dataset, found.ood


def benchmark_record(name: str | None) -> dict:
    """``{"benchmark": {...}}`` for a run's ``dataset`` section ({} without a benchmark)."""
    return {} if name is None else {"benchmark": benchmark(name).record()}


def benchmark_for(dataset: str, ood_name: str) -> Benchmark:
    """The benchmark whose list of ``ood_name`` a run on ``dataset`` reads: the benchmark of
    that in-distribution set (OpenOOD removes from each OOD list the images of its ID
    classes), else the first that lists the set (CIFAR-10's, ImageNet-1K's)."""
    dataset = ALIASES.get(dataset, dataset)
    for candidate in BENCHMARKS.values():
        if candidate.dataset == dataset and candidate.ood_list(ood_name) is not None:
            return candidate
    return next(b for b in BENCHMARKS.values() if b.ood_list(ood_name) is not None)


def read_openood_list(root: Path, listed: Listed, *, ood: bool):
    """An OpenOOD image list → :class:`~ncood.datasets.base.ImageFiles` (paths under the image
    folder, the labels of the list; −1 for an OOD set), through the one list reader
    (ncood.datasets.files); a missing list is one line naming it and where it was expected."""
    from ncood.datasets.files import read_image_list

    list_path = root / listed.list_file
    if not list_path.is_file():
        raise NcoodError(
            f"OpenOOD's list {listed.list_file} is not under {root} (expected {list_path}): "
            f"{DOWNLOAD_HINT}"
        )
    return read_image_list(list_path, root / listed.images, ood=ood, hint=DOWNLOAD_HINT)


def benchmark_in_distribution(bench: Benchmark, root: Path):
    """The benchmark's in-distribution set: train and test lists as files on disk, with
    OpenOOD's preprocessing for it (resize, crop, mean and std)."""
    from ncood.datasets.base import InDistribution

    return InDistribution(
        name=bench.dataset,
        train=read_openood_list(root, bench.train, ood=False),
        test=read_openood_list(root, bench.test, ood=False),
        num_classes=bench.num_classes,
        mean=bench.mean,
        std=bench.std,
        resize=bench.resize,
        crop=bench.crop,
    )


def benchmark_ood(bench: Benchmark, name: str, root: Path):
    """One OOD set (test or validation) of the benchmark, as files on disk."""
    listed = bench.ood_list(name)
    if listed is None:
        raise NcoodError(f"{bench.name} has no OOD set {name!r} (it has {', '.join(bench.ood)})")
    return read_openood_list(root, listed, ood=True)


def named_ood(name: str, root: Path, dataset: str):
    """A named OOD set (``--ood tin``) as files on disk, from the list of the benchmark whose
    in-distribution set is ``dataset`` (:func:`benchmark_for`)."""
    return benchmark_ood(benchmark_for(dataset, name), name, root)
