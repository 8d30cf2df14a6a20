"""``ncood extract``: a model trained anywhere (checkpoints + an architecture name) → a run."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Annotated

import typer

from ncood.cli.app import (
    Command,
    DataDirOption,
    app,
    int_list,
    split_names,
    user_errors,
)
from ncood.errors import NcoodError


def _expand(paths: list[Path]) -> list[Path]:
    """A quoted glob (``--weights 'ckpt/epoch_*.pth'``) is expanded here, as a shell would."""
    expanded: list[Path] = []
    for path in paths:
        text = str(path)
        if not path.exists() and glob.has_magic(text):
            matches = sorted(glob.glob(text))
            if not matches:
                raise NcoodError(f"no weights file matches {text!r}")
            expanded += [Path(m) for m in matches]
        else:
            expanded.append(path)
    return expanded


@app.command(cls=Command)
@user_errors
def extract(
    model: Annotated[
        str,
        typer.Option(
            metavar="ARCH",
            help="Architecture: resnet18-cifar, openood:resnet18_32x32, torchvision:NAME, "
            "timm:NAME, package.module:callable, or one a plugin registers.",
        ),
    ],
    weights: Annotated[
        list[Path],
        typer.Option(
            metavar="FILE",
            help="Weights file(s): .safetensors, .pt, .pth, .ckpt; several = epochs.",
        ),
    ],
    dataset: Annotated[
        str, typer.Option(metavar="DATASET", help="In-distribution dataset, as for `ncood train`.")
    ],
    out: Annotated[Path, typer.Option(metavar="RUN_DIR", help="Run directory to write.")],
    more_weights: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="[FILE]...", help="More weights files (what a glob after --weights gives)."
        ),
    ] = None,
    ood: Annotated[
        str | None,
        typer.Option(metavar="SETS", help="OOD sets, comma-separated (svhn, dtd, folder:PATH, …)."),
    ] = None,
    data_dir: DataDirOption = None,
    num_classes: Annotated[
        int | None, typer.Option(metavar="N", help="The model's classes (must be the dataset's).")
    ] = None,
    image_size: Annotated[
        int | None,
        typer.Option(metavar="SIZE", help="Resize images to SIZE×SIZE before normalising."),
    ] = None,
    normalize: Annotated[
        str,
        typer.Option(
            metavar="dataset|imagenet|MEAN/STD",
            help="dataset (its mean/std), imagenet, or MEAN/STD (e.g. 0.5/0.25).",
        ),
    ] = "dataset",
    feature_layer: Annotated[
        str | None,
        typer.Option(
            metavar="MODULE", help="Module whose input (a Linear) or output gives the features."
        ),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(metavar="N", help="Images per forward pass.")
    ] = None,
    device: Annotated[
        str, typer.Option(metavar="DEVICE", help="auto, cpu, cuda, cuda:1 …")
    ] = "auto",
    epochs: Annotated[
        str | None,
        typer.Option(metavar="EPOCHS", help="Epochs of the weights files, in order: 10,20,30."),
    ] = None,
    model_arg: Annotated[
        list[str] | None,
        typer.Option(
            "--model-arg",
            metavar="KEY=VALUE",
            help="KEY=VALUE passed to the architecture (repeatable).",
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(metavar="N", help="At most N images per split (a fixed random subset)."),
    ] = None,
    download: Annotated[
        bool, typer.Option(help="Download missing datasets when the network allows.")
    ] = True,
    force: Annotated[bool, typer.Option(help="Replace an existing run in --out.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Import a model trained anywhere: run it over the datasets, write an ncood run.

    `ncood analyze` and `ncood report` then work on it; see docs/extract.md.
    """
    from ncood.extraction.named import ExtractRequest, parse_model_args, run_extract

    request = ExtractRequest(
        model=model,
        weights=_expand([*weights, *(more_weights or [])]),
        dataset=dataset,
        ood=split_names(ood) or [],
        out=out,
        data_dir=data_dir,
        num_classes=num_classes,
        image_size=image_size,
        normalize=normalize,
        feature_layer=feature_layer,
        batch_size=batch_size,
        device=device,
        epochs=int_list(epochs),
        model_args=parse_model_args(model_arg or []),
        limit=limit,
        download=download,
        force=force,
    )
    run = run_extract(request, show_progress=not quiet)
    evaluation = run.manifest()["evaluation"][-1]
    typer.echo(
        f"run written to {run.root} ({len(run.feature_epochs())} epoch(s); epoch "
        f"{evaluation['epoch']}: train acc {evaluation['train_acc']:.4f}, "
        f"test acc {evaluation['test_acc']:.4f})"
    )
