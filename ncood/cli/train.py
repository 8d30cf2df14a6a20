"""``ncood train``: train a ResNet-18 and dump features at each checkpoint."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from ncood.cli.app import Command, DataDirOption, app, user_errors
from ncood.cli.app import int_list as _int_list
from ncood.cli.app import split_names as _split_names
from ncood.errors import NcoodError


@app.command(cls=Command)
@user_errors
def train(
    preset: Annotated[
        str | None, typer.Option(metavar="NAME", help="Named configuration (see `ncood presets`).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(metavar="RUN_DIR", help="Run directory to create.")
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            metavar="RUN_DIR", help="Continue this run from its last complete epoch (same config)."
        ),
    ] = None,
    epochs: Annotated[int | None, typer.Option(metavar="N", help="Number of epochs.")] = None,
    seed: Annotated[int | None, typer.Option(metavar="N", help="Random seed.")] = None,
    seeds: Annotated[
        str | None,
        typer.Option(
            metavar="SEEDS",
            help="Several seeds, e.g. 0,1,2: one run each in OUT/seed-<s>/ (one per GPU under "
            "torchrun).",
        ),
    ] = None,
    lr: Annotated[float | None, typer.Option(metavar="LR", help="Initial learning rate.")] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(metavar="N", help="Global batch size (split across torchrun processes)."),
    ] = None,
    schedule: Annotated[
        str | None, typer.Option(metavar="cosine|multistep", help="cosine or multistep.")
    ] = None,
    milestones: Annotated[
        str | None, typer.Option(metavar="EPOCHS", help="Multistep milestones, e.g. 300,450.")
    ] = None,
    gamma: Annotated[
        float | None, typer.Option(metavar="FACTOR", help="Multistep decay factor.")
    ] = None,
    momentum: Annotated[
        float | None, typer.Option(metavar="MOMENTUM", help="SGD momentum.")
    ] = None,
    weight_decay: Annotated[
        float | None, typer.Option(metavar="DECAY", help="SGD weight decay.")
    ] = None,
    width: Annotated[
        int | None, typer.Option(metavar="N", help="ResNet base width (64 = standard).")
    ] = None,
    crop_padding: Annotated[
        int | None,
        typer.Option(metavar="PIXELS", help="Random-crop padding in pixels (0 = no crop)."),
    ] = None,
    flip: Annotated[bool | None, typer.Option(help="Random horizontal flips.")] = None,
    checkpoint_every: Annotated[
        int | None, typer.Option(metavar="N", help="Checkpoint (and features) period in epochs.")
    ] = None,
    checkpoint_epochs: Annotated[
        str | None,
        typer.Option(metavar="EPOCHS", help="Explicit checkpoint epochs, e.g. 1,5,10,200."),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(metavar="DATASET", help="In-distribution dataset: cifar100, cifar10, digits."),
    ] = None,
    ood: Annotated[
        str | None,
        typer.Option(
            metavar="SETS",
            help="OOD sets, comma-separated: svhn, cifar10, cifar100, mnist, fashionmnist, "
            "dtd, photos, noise, folder:PATH.",
        ),
    ] = None,
    data_dir: DataDirOption = None,
    download: Annotated[
        bool | None, typer.Option(help="Download missing datasets when the network allows.")
    ] = None,
    train_subset: Annotated[
        int | None,
        typer.Option(metavar="N", help="Train on a fixed random subset of this many images."),
    ] = None,
    device: Annotated[
        str | None, typer.Option(metavar="DEVICE", help="auto, cpu, cuda, cuda:1 …")
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            metavar="auto|fp32|bf16",
            help="auto (bf16 autocast on GPUs with native bf16), fp32 or bf16.",
        ),
    ] = None,
    channels_last: Annotated[
        bool | None, typer.Option(help="channels_last layout (default: on for CUDA).")
    ] = None,
    compile: Annotated[
        bool | None,
        typer.Option(
            "--compile/--no-compile", help="torch.compile the model (static shapes: two graphs)."
        ),
    ] = None,
    cuda_graphs: Annotated[
        bool | None,
        typer.Option(help="Compile with CUDA graphs (mode=reduce-overhead); implies --compile."),
    ] = None,
    deterministic: Annotated[
        bool | None,
        typer.Option(help="Bitwise-reproducible CUDA training (deterministic kernels, slower)."),
    ] = None,
    sync_batchnorm: Annotated[
        bool | None,
        typer.Option(help="Under torchrun, BatchNorm statistics over the global batch."),
    ] = None,
    stage_features: Annotated[
        bool | None, typer.Option(help="Also dump the pooled output of each ResNet stage.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="Print the resolved configuration and stop.")
    ] = False,
    force: Annotated[bool, typer.Option(help="Replace an existing run in --out.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Train a ResNet-18 and dump features, logits and labels at each checkpoint.

    Under `torchrun --nproc_per_node=N -m ncood train …` it trains one run with
    DistributedDataParallel, or with --seeds one run per seed on each GPU.
    """
    overrides = {
        "epochs": epochs,
        "seed": seed,
        "lr": lr,
        "batch_size": batch_size,
        "schedule": schedule,
        "milestones": _int_list(milestones),
        "gamma": gamma,
        "momentum": momentum,
        "weight_decay": weight_decay,
        "width": width,
        "crop_padding": crop_padding,
        "flip": flip,
        "checkpoint_every": checkpoint_every,
        "checkpoint_epochs": _int_list(checkpoint_epochs),
        "dataset": dataset,
        "ood": _split_names(ood),
        "download": download,
        "train_subset": train_subset,
        "precision": precision,
        "channels_last": channels_last,
        "compile": compile,
        "cuda_graphs": cuda_graphs,
        "deterministic": deterministic,
        "sync_batchnorm": sync_batchnorm,
        "stage_features": stage_features,
    }
    where = {"device": device, "data_dir": str(data_dir) if data_dir else None}
    seed_list = _int_list(seeds)
    try:
        if resume is not None:
            _refuse_changes_on_resume(overrides, preset, out, force, seeds)
            _resume(resume, where, dry_run=dry_run, quiet=quiet)
            return
        if preset is None or (out is None and not dry_run):
            raise NcoodError("give --preset NAME and --out RUN_DIR (or --resume RUN_DIR)")
        if seed_list is not None and seed is not None:
            raise NcoodError("give --seed or --seeds, not both")
        _start(preset, overrides | where, out, seed_list, dry_run=dry_run, force=force, quiet=quiet)
    except NcoodError:
        if not _speaks(seed_list):
            raise typer.Exit(1) from None  # under torchrun, rank 0 alone says what went wrong
        raise


def _speaks(seed_list: list[int] | None) -> bool:
    """Rank 0 speaks for a run trained together; with --seeds every process has its own."""
    return seed_list is not None or int(os.environ.get("RANK", "0")) == 0


def _refuse_changes_on_resume(overrides, preset, out, force, seeds) -> None:
    given = [f"--{k.replace('_', '-')}" for k, v in overrides.items() if v is not None]
    given += ["--preset"] * (preset is not None) + ["--out"] * (out is not None)
    given += ["--force"] * force + ["--seeds"] * (seeds is not None)
    if given:
        raise NcoodError(
            f"--resume continues the run with its stored configuration; drop "
            f"{', '.join(given)} (only --device, --data-dir and --quiet may change)"
        )


def _resume(root: Path, where: dict, *, dry_run: bool, quiet: bool) -> None:
    """One run, or every run of a --seeds folder (this process's share under torchrun)."""
    from ncood.engine.seeds import resume_seeds, seed_runs

    if dry_run:
        from ncood.engine.presets import TrainConfig
        from ncood.store.run import RunDir

        roots = seed_runs(root) or [root]
        for path in roots:
            stored = TrainConfig.from_dict(RunDir.open(path).manifest()["config"])
            typer.echo(json.dumps(stored.to_dict(), indent=2))
        return
    if seed_runs(root):
        for run, trained in resume_seeds(root, **where, show_progress=not quiet):
            _say_resumed(run, trained)
        return
    from ncood.engine.train import resume as resume_training

    run, trained = resume_training(root, **where, show_progress=not quiet)
    if _speaks(None):
        _say_resumed(run, trained)


def _say_resumed(run, trained: bool) -> None:
    done = "resumed and completed" if trained else "is already complete:"
    typer.echo(f"run {done} {run.root}")


def _start(
    preset: str,
    overrides: dict,
    out: Path | None,
    seed_list: list[int] | None,
    *,
    dry_run: bool,
    force: bool,
    quiet: bool,
) -> None:
    from ncood.engine.presets import resolve_preset

    config = resolve_preset(preset, **overrides)
    if dry_run:
        from ncood.datasets import check_names

        check_names(config.dataset, config.ood)
        typer.echo(json.dumps(config.to_dict(), indent=2))
        return
    if seed_list is not None:
        from ncood.engine.seeds import train_seeds

        train_seeds(
            config,
            out,
            seed_list,
            force=force,
            show_progress=not quiet,
            on_run=lambda run: typer.echo(f"run written to {run.root}"),
        )
        return
    from ncood.engine.train import train as run_training

    run = run_training(config, out, force=force, show_progress=not quiet)
    if _speaks(None):
        typer.echo(f"run written to {run.root}")
