"""``ncood train``: train a ResNet-18 and dump features at each checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ncood.cli.app import app, user_errors
from ncood.cli.app import int_list as _int_list
from ncood.cli.app import split_names as _split_names
from ncood.errors import NcoodError


@app.command()
@user_errors
def train(
    preset: Annotated[
        str | None, typer.Option(help="Named configuration (see `ncood presets`).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Run directory to create.")] = None,
    resume: Annotated[
        Path | None,
        typer.Option(help="Continue this run from its last complete epoch (same config)."),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Number of epochs.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    lr: Annotated[float | None, typer.Option(help="Initial learning rate.")] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Global batch size (split across torchrun processes).")
    ] = None,
    schedule: Annotated[str | None, typer.Option(help="cosine or multistep.")] = None,
    milestones: Annotated[
        str | None, typer.Option(help="Multistep milestones, e.g. 300,450.")
    ] = None,
    gamma: Annotated[float | None, typer.Option(help="Multistep decay factor.")] = None,
    momentum: Annotated[float | None, typer.Option(help="SGD momentum.")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="SGD weight decay.")] = None,
    width: Annotated[int | None, typer.Option(help="ResNet base width (64 = standard).")] = None,
    crop_padding: Annotated[
        int | None, typer.Option(help="Random-crop padding in pixels (0 = no crop).")
    ] = None,
    flip: Annotated[bool | None, typer.Option(help="Random horizontal flips.")] = None,
    checkpoint_every: Annotated[
        int | None, typer.Option(help="Checkpoint (and features) period in epochs.")
    ] = None,
    checkpoint_epochs: Annotated[
        str | None, typer.Option(help="Explicit checkpoint epochs, e.g. 1,5,10,200.")
    ] = None,
    dataset: Annotated[
        str | None, typer.Option(help="In-distribution dataset: cifar100, cifar10, digits.")
    ] = None,
    ood: Annotated[
        str | None,
        typer.Option(
            help="OOD sets, comma-separated: svhn, cifar10, cifar100, mnist, fashionmnist, "
            "dtd, photos, noise, folder:PATH."
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Where the datasets live (default $NCOOD_DATA_DIR or ./data)."),
    ] = None,
    download: Annotated[
        bool | None, typer.Option(help="Download missing datasets when the network allows.")
    ] = None,
    train_subset: Annotated[
        int | None, typer.Option(help="Train on a fixed random subset of this many images.")
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda, cuda:1 …")] = None,
    precision: Annotated[
        str | None, typer.Option(help="auto (bf16 autocast on CUDA), fp32 or bf16.")
    ] = None,
    channels_last: Annotated[
        bool | None, typer.Option(help="channels_last layout (default: on for CUDA).")
    ] = None,
    compile: Annotated[
        bool | None, typer.Option("--compile/--no-compile", help="torch.compile the model.")
    ] = None,
    deterministic: Annotated[
        bool | None, typer.Option(help="Deterministic CUDA kernels (slower).")
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

    Under `torchrun --nproc_per_node=N -m ncood train …` it trains with DistributedDataParallel.
    """
    import os

    from ncood.engine.presets import TrainConfig, resolve_preset

    main_rank = int(os.environ.get("RANK", "0")) == 0
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
        "deterministic": deterministic,
        "sync_batchnorm": sync_batchnorm,
        "stage_features": stage_features,
    }
    try:
        if resume is not None:
            given = [f"--{k.replace('_', '-')}" for k, v in overrides.items() if v is not None]
            given += ["--preset"] * (preset is not None) + ["--out"] * (out is not None)
            given += ["--force"] * force
            if given:
                raise NcoodError(
                    f"--resume continues the run with its stored configuration; drop "
                    f"{', '.join(given)} (only --device, --data-dir and --quiet may change)"
                )
            if dry_run:
                from ncood.run import RunDir

                stored = TrainConfig.from_dict(RunDir.open(resume).manifest()["config"])
                typer.echo(json.dumps(stored.to_dict(), indent=2))
                return
            from ncood.engine.train import resume as resume_training

            run, trained = resume_training(
                resume,
                device=device,
                data_dir=str(data_dir) if data_dir else None,
                show_progress=not quiet,
            )
            if main_rank:
                done = "resumed and completed" if trained else "is already complete:"
                typer.echo(f"run {done} {run.root}")
            return
        if preset is None or (out is None and not dry_run):
            raise NcoodError("give --preset NAME and --out RUN_DIR (or --resume RUN_DIR)")
        config = resolve_preset(
            preset,
            **overrides,
            device=device,
            data_dir=str(data_dir) if data_dir else None,
        )
        if dry_run:
            from ncood.engine.data import check_names

            check_names(config.dataset, config.ood)
            typer.echo(json.dumps(config.to_dict(), indent=2))
            return
        from ncood.engine.train import train as run_training

        run = run_training(config, out, force=force, show_progress=not quiet)
        if main_rank:
            typer.echo(f"run written to {run.root}")
    except NcoodError:
        if not main_rank:  # under torchrun, rank 0 alone says what went wrong
            raise typer.Exit(1) from None
        raise
