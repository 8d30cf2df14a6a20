"""The ``ncood`` command line: train, analyze, report, plugins."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

import ncood
from ncood.errors import NcoodError

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="Neural Collapse and OOD detection: train, analyse features, write the report.",
)


def user_errors(command):
    """A user error becomes one line on stderr and exit 1, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except NcoodError as exc:
            typer.echo(f"ncood: error: {exc}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("ncood: interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ncood {ncood.__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Neural Collapse and OOD detection: train, analyze, report."""


def _split_names(value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise typer.BadParameter("give at least one name")
    return names


def _int_list(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers, got {value!r}") from None


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


@app.command()
@user_errors
def presets() -> None:
    """List the training presets."""
    from ncood.engine.presets import PRESETS

    for name, config in PRESETS.items():
        typer.echo(
            f"{name:16} {config.dataset} vs {','.join(config.ood)}, {config.epochs} epochs, "
            f"{config.schedule}, width {config.width}"
        )


@app.command()
@user_errors
def analyze(
    source: Annotated[
        Path, typer.Argument(help="A run directory or a features .safetensors file.")
    ],
    plugins: Annotated[
        str | None,
        typer.Option(help="Comma-separated scorers and analyses (default: all loaded)."),
    ] = None,
    epoch: Annotated[str, typer.Option(help="Checkpoint epoch: N, 'last' or 'all'.")] = "last",
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Parameter override NAME.PARAM=VALUE (repeatable)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Where results.json goes for a features file.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Score OOD detection and measure Neural Collapse on dumped features."""
    from ncood.analysis import analyse_file, select
    from ncood.features import check_readable
    from ncood.plugins import host
    from ncood.progress import progress_bar
    from ncood.run import RunDir
    from ncood.scoring import parse_settings

    names = _split_names(plugins)
    scorers, analyses = select(host(), names)
    settings = parse_settings(set_ or [])

    if source.is_file():
        jobs = [(None, source, out)]
    else:
        run = RunDir.open(source)
        available = run.feature_epochs()
        if not available:
            raise NcoodError(f"{source} has no features yet (train it first)")
        if epoch == "all":
            epochs = available
        elif epoch == "last":
            epochs = [available[-1]]
        else:
            try:
                wanted = int(epoch)
            except ValueError:
                raise NcoodError(
                    f"--epoch must be a number, 'last' or 'all', got {epoch!r}"
                ) from None
            if wanted not in available:
                raise NcoodError(f"no features for epoch {wanted} (available: {available})")
            epochs = [wanted]
        jobs = [(e, run.features(e), run.analysis_dir(e)) for e in epochs]

    for _, features_path, _ in jobs:
        check_readable(features_path)  # a bad file is one line, before any progress bar
    collected, failures = {}, []
    steps = len(scorers) + len(analyses)
    with progress_bar(not quiet) as progress:
        task = progress.add_task("analyze", total=steps * len(jobs), status="")
        for job_epoch, features_path, out_dir in jobs:
            outcome = analyse_file(
                features_path,
                out_dir,
                scorers,
                analyses,
                settings,
                on_step=lambda name, e=job_epoch: progress.update(
                    task, advance=1, status=f"epoch {e} {name}" if e else name
                ),
            )
            collected[job_epoch] = outcome.results
            failures += [
                f"{name} (epoch {job_epoch})" if job_epoch else name for name in outcome.failures
            ]

    if as_json:
        payload = (
            next(iter(collected.values()))
            if len(collected) == 1
            else {"epochs": {str(e): r for e, r in collected.items()}}
        )
        typer.echo(json.dumps(payload, indent=2))
    else:
        for job_epoch, results in collected.items():
            _print_summary(job_epoch, results)
    if failures:
        typer.echo(
            f"ncood: error: these failed (see results.json): {', '.join(failures)}", err=True
        )
        raise typer.Exit(1)


def _print_summary(epoch: int | None, results: dict) -> None:
    title = f"epoch {epoch}" if epoch is not None else results.get("features", "")
    typer.echo(f"== {title}")
    for ood_name, per_scorer in results["ood"].items():
        for scorer, metrics in per_scorer.items():
            typer.echo(
                f"  {ood_name:10} {scorer:12} AUROC {metrics['auroc']:.4f}  "
                f"FPR@95 {metrics['fpr95']:.4f}"
            )
    for key, value in results.items():
        if key in ("ood", "params", "timings", "errors", "test", "features", "epoch"):
            continue
        if isinstance(value, dict):
            _print_numbers(key, value)


def _print_numbers(prefix: str, values: dict) -> None:
    """One line per analysis (or per nested group, e.g. a ResNet stage) of its numbers."""
    shown = ", ".join(
        f"{k}={v:.4g}"
        for k, v in values.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    )
    if shown:
        typer.echo(f"  {prefix}: {shown}")
    for key, inner in values.items():
        if isinstance(inner, dict):
            _print_numbers(f"{prefix}.{key}", inner)


@app.command()
@user_errors
def report(
    runs: Annotated[list[Path], typer.Argument(help="One or more analysed run directories.")],
    lang: Annotated[str, typer.Option(help="Language of the document: fr or en.")] = "fr",
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("reports"),
    name: Annotated[str | None, typer.Option(help="Base name of the .tex/.pdf.")] = None,
    no_pdf: Annotated[bool, typer.Option("--no-pdf", help="Write the .tex only.")] = False,
) -> None:
    """Render figures and tables into a LaTeX report and compile it to PDF."""
    from ncood.report.build import build_report

    result = build_report(runs, lang=lang, out_dir=out, name=name, pdf=not no_pdf)
    if result.pdf is not None:
        typer.echo(f"report written to {result.pdf}")
    else:
        typer.echo(f"LaTeX source written to {result.tex}")
        if result.message:
            typer.echo(result.message, err=True)


@app.command("plugins")
@user_errors
def list_plugins(
    builtins: Annotated[
        bool, typer.Option("--builtins/--no-builtins", help="Include the built-in plugins.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List the loaded plugins and what each contributes."""
    from ncood.plugins import host

    plugin_host = host()
    contributions: dict[str, list[str]] = {}
    for registry in (plugin_host.scorers(), plugin_host.analyses(), plugin_host.report_sections()):
        for name, item in registry.items():
            contributions.setdefault(item.plugin, []).append(f"{registry.kind} {name}")
    rows = [
        {
            "name": info.name,
            "distribution": info.distribution,
            "version": info.version,
            "builtin": info.builtin,
            "hooks": info.hooks,
            "contributes": contributions.get(info.name, []),
        }
        for info in plugin_host.plugins()
        if builtins or not info.builtin
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        origin = "built-in" if row["builtin"] else row["distribution"]
        typer.echo(f"{row['name']} {row['version']} ({origin})")
        for item in row["contributes"]:
            typer.echo(f"    {item}")


def main() -> None:
    app(prog_name="ncood")


if __name__ == "__main__":
    sys.exit(main())
