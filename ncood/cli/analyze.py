"""``ncood analyze``: OOD scores and Neural Collapse metrics of dumped features."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

import typer

from ncood.cli.app import Command, app, split_names, user_errors, warn_broken_plugins
from ncood.errors import NcoodError

_GROUP_WORD = re.compile(r"^[A-Za-z][\w-]*:[^-]\S*$")


@app.command(cls=Command)
@user_errors
def analyze(
    source: Annotated[
        Path,
        typer.Argument(metavar="SOURCE", help="A run directory or a features .safetensors file."),
    ],
    plugins: Annotated[
        str | None,
        typer.Option(
            metavar="NAMES",
            help="Comma-separated scorers and analyses (default: every feature-level scorer "
            "and analysis; 'all' adds the model-based scorers, which run the network).",
        ),
    ] = None,
    epoch: Annotated[
        str, typer.Option(metavar="N|last|all", help="Checkpoint epoch: N, 'last' or 'all'.")
    ] = "last",
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="NAME.PARAM=VALUE",
            help="Parameter override NAME.PARAM=VALUE (repeatable).",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="Where results.json goes for a features file."),
    ] = None,
    ood: Annotated[
        list[str] | None,
        typer.Option(
            metavar="[GROUP:]SETS",
            help="Test OOD sets and their groups: near:cifar10,tin far:svhn,mnist,dtd "
            "(default: every OOD set of the features).",
        ),
    ] = None,
    bootstrap: Annotated[
        int,
        typer.Option(
            metavar="N", help="Stratified bootstrap resamples for the 95 % intervals (0: none)."
        ),
    ] = 1000,
    bootstrap_seed: Annotated[
        int, typer.Option(metavar="N", help="Seed of the bootstrap resamples.")
    ] = 0,
    tune_: Annotated[
        list[str] | None,
        typer.Option(
            "--tune",
            metavar="NAME.PARAM=V1,V2,...",
            help="Grid to choose from, NAME.PARAM=V1,V2,... (repeatable; --tune-on).",
        ),
    ] = None,
    tune_on: Annotated[
        str | None,
        typer.Option(
            metavar="SET", help="OOD validation set for --tune; must not be a test OOD set."
        ),
    ] = None,
    tune_fraction: Annotated[
        float,
        typer.Option(
            metavar="FRACTION", help="Share of each class of ID train held out for --tune."
        ),
    ] = 0.1,
    tune_seed: Annotated[int, typer.Option(metavar="N", help="Seed of the held-out ID split.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Check the sha256 of each features file (and, for model-based scorers, "
            "of each checkpoint) against the run's manifest.",
        ),
    ] = False,
    discard_failed: Annotated[
        bool,
        typer.Option(
            "--discard-failed",
            help="A plugin that fails loses its previous result (default: it is kept).",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
    device: Annotated[
        str | None,
        typer.Option(
            metavar="DEVICE",
            help="Run the scorers that can use an accelerator there (e.g. cuda): sets the "
            "'device' parameter of each selected scorer that has one, unless --set does, and "
            "is where model-based scorers run the network (default: a GPU if there is one).",
        ),
    ] = None,
    precision: Annotated[
        str,
        typer.Option(
            metavar="fp32|bf16",
            help="Model-based scorers' forward passes: exact fp32 (no TF32), or bf16 autocast.",
        ),
    ] = "fp32",
    data_dir: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Where the run's datasets are, for model-based scorers (default: the run's).",
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(metavar="N", help="Images per forward of the model-based scorers."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            metavar="ARCH",
            help="An imported run's architecture, named again: a package.module:callable "
            "that the run records is imported only then (it must equal the manifest's).",
        ),
    ] = None,
) -> None:
    """Score OOD detection and measure Neural Collapse on dumped features.

    Every OOD metric gets a 95 % stratified bootstrap interval, and each pair of scorers a
    DeLong p-value (docs/conventions.md).
    """
    from ncood.analyze.driver import (
        OodOptions,
        analyse_file,
        check_model_scorers,
        check_parameters,
        ood_set_names,
        select,
    )
    from ncood.host.loading import host
    from ncood.host.scoring import parse_settings
    from ncood.ood.groups import parse_ood
    from ncood.ood.tuning import parse_tune
    from ncood.progress import progress_bar
    from ncood.store.features import check_readable
    from ncood.store.integrity import verify_files
    from ncood.store.outputs import one_line_os_errors, prepare_out_dir
    from ncood.store.run import RunDir

    names = split_names(plugins)
    scorers, analyses = select(host(), names)
    warn_broken_plugins(host())
    settings = parse_settings(set_ or [])
    if device:
        from ncood.engine.accel import pick_device

        pick_device(device)  # a device that cannot compute is one line, before any work
        for contribution in scorers:
            if "device" in contribution.defaults():
                settings.setdefault(contribution.name, {}).setdefault("device", device)
    check_parameters(settings, [*scorers, *analyses])
    options = OodOptions(
        bootstrap=bootstrap,
        bootstrap_seed=bootstrap_seed,
        test_sets=parse_ood(ood) if ood else None,
        tune=parse_tune(tune_ or []),
        tune_on=tune_on,
        tune_fraction=tune_fraction,
        tune_seed=tune_seed,
    )

    on_model = [c for c in scorers if c.needs_network]
    run = None
    if source.is_file():
        check_model_scorers(on_model, False)
        if out is not None:
            prepare_out_dir(out)
        jobs = [(None, source, out)]
    else:
        if out is not None:
            raise NcoodError("--out is for a features file; a run's results go into the run")
        run = RunDir.open(source)
        epochs = run.select_feature_epochs(epoch)
        jobs = [(e, run.features(e), run.analysis_dir(e)) for e in epochs]
        verify_files(run, [str(path.relative_to(run.root)) for _, path, _ in jobs], full=verify)
    check_model_scorers(on_model, True, options)
    network_at = _model_inputs(
        run,
        [e for e, _, _ in jobs],
        on_model,
        device,
        precision,
        data_dir,
        batch_size,
        quiet,
        model,
        verify=verify,
    )

    for _, features_path, _ in jobs:
        check_readable(features_path)  # a bad file is one line, before any progress bar
        options.check(ood_set_names(features_path))  # so is a bad --ood / --tune-on
    collected, failures = {}, []
    steps = len(scorers) + len(analyses)
    with progress_bar(not quiet) as progress:
        task = progress.add_task("analyze", total=steps * len(jobs), status="")
        for job_epoch, features_path, out_dir in jobs:
            which = f"epoch {job_epoch}" if job_epoch is not None else str(features_path)
            with one_line_os_errors(f"the results of {which} were not written (kept as they were)"):
                outcome = analyse_file(
                    features_path,
                    out_dir,
                    scorers,
                    analyses,
                    settings,
                    options=options,
                    on_step=lambda name, e=job_epoch: progress.update(
                        task, advance=1, status=f"epoch {e} {name}" if e else name
                    ),
                    discard_failed=discard_failed,
                    model_inputs=network_at(job_epoch, progress),
                )
            collected[job_epoch] = outcome.results
            for name, reason in outcome.reasons().items():
                where = f"{name} (epoch {job_epoch})" if job_epoch is not None else name
                kept = " (its previous result is kept)" if name in outcome.kept else ""
                failures.append(f"{where} failed: {reason}{kept}")

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
    for failure in failures:
        typer.echo(f"ncood: error: {failure}", err=True)
    if failures:
        raise typer.Exit(1)


def _model_inputs(
    run, epochs, on_model, device, precision, data_dir, batch_size, quiet, model, *, verify=False
):
    """For each epoch, how the model-based scorers get the network and the batches (None when
    none is selected); every epoch's weights are checked before any work (their sha256 too
    with ``--verify``)."""
    if not on_model:
        return lambda epoch, progress: None
    from ncood.engine.accel import pick_device
    from ncood.extraction.rerun import (
        check_precision,
        check_rebuildable,
        load_run_data,
        open_model_inputs,
    )

    check_precision(precision)
    if batch_size is not None and batch_size < 1:
        raise NcoodError("--batch-size must be at least 1")
    target = pick_device(device or "auto")
    for epoch in epochs:
        check_rebuildable(run, epoch, model, verify=verify)
    data = load_run_data(run, data_dir, show_progress=not quiet)  # once, before any work

    def at(epoch, progress):
        def build():
            inputs = open_model_inputs(
                run,
                epoch,
                device=target,
                data=data,
                batch_size=batch_size,
                precision=precision,
                show_progress=not quiet,
                model=model,
            )
            # test and OOD once per scorer; a pass over train (a fit) adds itself as it starts
            scored = [b for name, b in inputs.splits.items() if name != "train"]
            total = len(on_model) * sum(b.count for b in scored)
            task = progress.add_task("network", total=total, status=f"epoch {epoch} {target}")
            for batches in inputs.splits.values():
                batches.on_images = lambda n: progress.advance(task, n)
            train, counted = inputs.splits["train"], [total]

            def fit_pass() -> None:
                counted[0] += train.count
                progress.update(task, total=counted[0])

            train.on_start = fit_pass
            return inputs

        return build

    return at


def _print_summary(epoch: int | None, results: dict) -> None:
    from ncood.store.plugin_output import RESERVED_KEYS

    title = f"epoch {epoch}" if epoch is not None else results.get("features", "")
    typer.echo(f"== {title}")
    for ood_name, per_scorer in results["ood"].items():
        for scorer, metrics in per_scorer.items():
            auroc, fpr95 = (
                metrics.get(k) if isinstance(metrics, dict) else None for k in ("auroc", "fpr95")
            )
            if not all(isinstance(v, int | float) for v in (auroc, fpr95)):
                continue  # a kept entry of an older results.json that is not numbers
            typer.echo(
                f"  {ood_name:10} {scorer:12} AUROC {auroc:.4f}"
                f"{_bounds(metrics.get('auroc_ci'))}  FPR@95 {fpr95:.4f}"
                f"{_bounds(metrics.get('fpr95_ci'))}"
            )
        verdict = results.get("significance", {}).get("ood", {}).get(ood_name)
        if verdict:
            typer.echo(
                f"  {ood_name:10} best {verdict['best']}; indistinguishable from it (DeLong, "
                f"Holm, p > 0.05): {', '.join(verdict['indistinguishable'][1:]) or 'none'}"
            )
    for group, content in results.get("ood_groups", {}).items():
        for scorer, metrics in content["scorers"].items():
            typer.echo(
                f"  {group:10} {scorer:12} mean AUROC {metrics['auroc']:.4f}"
                f"{_bounds(metrics.get('auroc_ci'))} over {', '.join(content['sets'])}"
            )
    for scorer, tuned in results.get("tuning", {}).get("scorers", {}).items():
        chosen = ", ".join(f"{k}={v}" for k, v in tuned["chosen"].items())
        typer.echo(f"  tuned {scorer}: {chosen} (on {results['tuning']['ood']})")
    for key, value in results.items():
        if key in RESERVED_KEYS:  # not an analysis's own results
            continue
        if isinstance(value, dict):
            _print_numbers(key, value)


def _bounds(interval) -> str:
    return f" [{interval[0]:.4f}, {interval[1]:.4f}]" if interval else ""


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


def regroup_ood(args: list[str]) -> list[str]:
    """``analyze … --ood near:a,b far:c,d`` (OpenOOD's form) as ``--ood near:a,b --ood far:c,d``:
    a word after an ``--ood`` value that reads ``GROUP:SETS`` continues it."""
    if not args or args[0] != "analyze":
        return args
    out: list[str] = []
    after_ood = False  # the previous word was an --ood value
    for arg in args:
        if after_ood and _GROUP_WORD.match(arg) and not Path(arg).exists():
            out += ["--ood", arg]
            continue
        after_ood = (bool(out) and out[-1] == "--ood") or arg.startswith("--ood=")
        out.append(arg)
    return out
