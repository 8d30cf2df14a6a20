"""Several seeds of one configuration: one ordinary run per seed, in ``OUT/seed-<s>/``.

Sequential in one process, or spread over GPUs under torchrun: rank r of N trains seeds r,
r+N, r+2N … on its own GPU (its local rank), with no process group and no communication, so
N GPUs train N runs in the time of one. This is the multi-GPU mode that pays off for the TP:
splitting one batch of 128 over several GPUs cannot beat one GPU. ``ncood report OUT`` groups
the ``seed-*`` runs (mean ± std over seeds).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

from ncood.engine.distributed import Cluster
from ncood.errors import NcoodError
from ncood.store.members import SEED_FOLDER, seed_runs
from ncood.store.run import RunDir
from ncood.store.train_config import TrainConfig


def check_seeds(seeds: list[int]) -> list[int]:
    if not seeds:
        raise NcoodError("--seeds needs at least one seed, e.g. --seeds 0,1,2")
    if len(set(seeds)) != len(seeds):
        raise NcoodError(f"--seeds lists a seed twice: {','.join(map(str, seeds))}")
    if min(seeds) < 0:
        raise NcoodError("seeds are 0 or more")
    return seeds


def process_slot() -> Cluster:
    """This process's place among torchrun's processes (rank, world, local rank), used only to
    pick its seeds and its GPU: no process group is joined."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    return Cluster(rank=rank, world=world, local_rank=local_rank)


def own_seeds(seeds: list[int], slot: Cluster) -> list[int]:
    return seeds[slot.rank :: slot.world]


def seed_run(out: Path, seed: int) -> Path:
    return Path(out) / SEED_FOLDER.format(seed=seed)


def train_seeds(
    config: TrainConfig,
    out: str | Path,
    seeds: list[int],
    *,
    force: bool = False,
    show_progress: bool = True,
    on_run: Callable[[RunDir], None] | None = None,
) -> list[RunDir]:
    """Train this process's share of ``seeds``, one run each; returns the runs it wrote."""
    from ncood.engine.train import train

    slot = process_slot()
    runs = []
    for seed in own_seeds(check_seeds(seeds), slot):
        run = train(
            dataclasses.replace(config, seed=seed),
            seed_run(Path(out), seed),
            force=force,
            show_progress=show_progress,
            cluster=Cluster(local_rank=slot.local_rank),
        )
        runs.append(run)
        if on_run is not None:
            on_run(run)
    return runs


def resume_seeds(
    out: str | Path,
    *,
    device: str | None = None,
    data_dir: str | None = None,
    show_progress: bool = True,
) -> list[tuple[RunDir, bool]]:
    """Resume this process's share of a seeds folder's runs (complete ones are left alone)."""
    from ncood.engine.train import resume

    slot = process_slot()
    results = []
    for path in seed_runs(out)[slot.rank :: slot.world]:
        results.append(
            resume(
                path,
                device=device,
                data_dir=data_dir,
                show_progress=show_progress,
                cluster=Cluster(local_rank=slot.local_rank),
            )
        )
    return results
