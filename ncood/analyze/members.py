"""An ensemble of seed runs analyzed as one: the members' features files of one epoch, joined.

``ncood train --seeds 0,1,2 --out OUT`` writes one run per seed in ``OUT/seed-<s>/`` (they saw
the same images in the same order: the data and its split do not depend on the seed).
``ncood analyze OUT`` joins, for each selected epoch every member has, the members' features
files into one :class:`FeatureDump` whose every split carries ``members`` — the same split as
each run saw it — and runs the ensemble scorers (``needs_members``, e.g. ``ensemble``) on it.
Their results go to ``OUT/analysis/epoch-NNNN/`` with the same metrics, intervals and DeLong
tests as any run's.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ncood.errors import NcoodError
from ncood.store.features import FeatureDump
from ncood.store.run import RunDir, epoch_name


def join_members(dumps: list[FeatureDump]) -> FeatureDump:
    """The first member's dump, each of its splits carrying every member's. The scored splits
    (test, OOD) must hold the same images (same splits, sizes, labels and classes, else one
    line saying which differs); train may differ (a ``--train-subset`` is drawn by seed)."""
    if len(dumps) < 2:
        raise NcoodError(f"an ensemble needs at least two runs, got {len(dumps)}")
    first = dumps[0]
    names = set(first.splits())
    for index, dump in enumerate(dumps[1:], start=1):
        if set(dump.splits()) != names:
            raise NcoodError(
                f"member {index} has the splits {sorted(dump.splits())}, member 0 "
                f"{sorted(names)}: the runs of an ensemble must see the same data"
            )
        if dump.num_classes != first.num_classes:
            raise NcoodError(
                f"member {index} has {dump.num_classes} classes, member 0 {first.num_classes}"
            )
        for name, split in dump.splits().items():
            if name == "train":  # not scored; a --train-subset draws its images by seed
                continue
            if not np.array_equal(split.labels, first.splits()[name].labels):
                raise NcoodError(
                    f"member {index}'s split {name!r} holds other images than member 0's "
                    f"(their labels differ): the runs of an ensemble must see the same data"
                )

    def joined(name: str):
        return replace(first.splits()[name], members=tuple(d.splits()[name] for d in dumps))

    return replace(
        first,
        train=joined("train"),
        test=joined("test"),
        ood={name: joined(f"ood/{name}") for name in first.ood},
        metadata={**first.metadata, "members": str(len(dumps))},
    )


def member_runs(folder: Path) -> list[RunDir]:
    """The seed runs of a seeds folder (at least two), or one line saying why not."""
    from ncood.engine.seeds import seed_runs

    runs = [RunDir.open(path) for path in seed_runs(folder)]
    if len(runs) < 2:
        raise NcoodError(
            f"{folder} is neither a run nor a seeds folder with two runs or more "
            f"(`ncood train --seeds 0,1,2 --out {folder}` writes one)"
        )
    return runs


def member_jobs(folder: Path, spec: str) -> list[tuple[int, list[Path], Path]]:
    """(epoch, the members' features files, the results folder) for each epoch of ``spec``
    (N, 'last' or 'all') among those every member has features of."""
    runs = member_runs(folder)
    common = sorted(set.intersection(*(set(run.feature_epochs()) for run in runs)))
    if not common:
        raise NcoodError(f"the runs of {folder} share no epoch with features")
    if spec == "all":
        epochs = common
    elif spec == "last":
        epochs = common[-1:]
    else:
        try:
            epochs = [int(spec)]
        except ValueError:
            raise NcoodError(f"--epoch expects N, 'last' or 'all', got {spec!r}") from None
        if epochs[0] not in common:
            raise NcoodError(
                f"epoch {spec} is not among the epochs every run of {folder} has "
                f"({', '.join(map(str, common))})"
            )
    return [
        (epoch, [run.features(epoch) for run in runs], folder / "analysis" / epoch_name(epoch))
        for epoch in epochs
    ]
