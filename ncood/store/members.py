"""An ensemble of seed runs analyzed as one: the members' features of one epoch, joined.

``ncood train --seeds 0,1,2 --out OUT`` writes one run per seed in ``OUT/seed-<s>/`` (their test and
OOD sets are the same images in the same order; a ``--train-subset`` is drawn by seed).
``ncood analyze OUT`` joins, for each selected epoch every member has, the members' features
files into one :class:`FeatureDump` whose every split carries ``members`` — the same split as
each run saw it — and runs the ensemble scorers (``needs_members``, e.g. ``ensemble``) on it.
Their results go to ``OUT/analysis/epoch-NNNN/`` with the same metrics, intervals and DeLong
tests as any run's.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from ncood.errors import NcoodError
from ncood.store.features import FeatureDump
from ncood.store.run import MANIFEST

SEED_FOLDER = "seed-{seed}"  # where ``ncood train --seeds`` puts the run of each seed
_SEED_FOLDER = re.compile(r"seed-(\d+)")


def seed_runs(out: str | Path) -> list[Path]:
    """The ``seed-<s>`` run folders of a seeds folder, by seed; [] when it is not one."""
    root = Path(out)
    if (root / MANIFEST).exists() or not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _SEED_FOLDER.fullmatch(p.name))]
    return [path for _, path in sorted(found) if (path / MANIFEST).exists()]


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
