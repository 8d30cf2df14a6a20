"""``ncood analyze``: OOD scores and Neural Collapse metrics of dumped features."""

from __future__ import annotations

import functools
import inspect
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ncood.analyze.options import AnalyzeOptions
from ncood.cli.app import (
    Command,
    app,
    config_options,
    config_values,
    keyword,
    user_errors,
    warn_broken_plugins,
)
from ncood.errors import NcoodError

if TYPE_CHECKING:
    from ncood.host.network import ModelInputs

_GROUP_WORD = re.compile(r"^[A-Za-z][\w-]*:[^-]\S*$")


_SOURCE = typer.Argument(
    metavar="SOURCE",
    help="A run directory, a features .safetensors file, or a folder of `train --seeds` runs "
    "(scored as one ensemble).",
)


def analyze_command(options_class: type = AnalyzeOptions):
    """The ``ncood analyze`` function for ``options_class`` (its signature is the options)."""

    def analyze(*, source: Path, **given) -> None:
        """Score OOD detection and measure Neural Collapse on dumped features.

        Every OOD metric gets a 95 % stratified bootstrap interval, and each pair of scorers a
        DeLong p-value (docs/conventions.md).
        """
        from ncood.analyze.driver import check_model_scorers, check_parameters, select
        from ncood.host.loading import host
        from ncood.store.members import seed_runs

        options = options_class(**config_values(options_class, given))
        members = bool(seed_runs(source))  # a seeds folder: its runs scored as one ensemble
        scorers, analyses = select(host(), options.plugins, members=members)
        warn_broken_plugins(host())
        settings = options.settings
        if options.device:
            from ncood.engine.accel import pick_device

            pick_device(options.device)  # a device that cannot compute is one line, before any work
            for contribution in scorers:
                if "device" in contribution.defaults():
                    settings.setdefault(contribution.name, {}).setdefault("device", options.device)
        check_parameters(settings, [*scorers, *analyses])

        on_model = [c for c in scorers if c.needs_network]
        run, jobs = _jobs(source, options, on_model)
        if run is not None:
            options = options.with_benchmark(run.manifest())
        check_model_scorers(on_model, True, options)
        network = (
            _Network(run, [e for e, _, _ in jobs], len(on_model), options) if on_model else None
        )
        collected, failures = _analyze(jobs, scorers, analyses, options, network)
        if options.as_json:
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

    analyze.__signature__ = inspect.Signature(
        [keyword("source", Path, _SOURCE, inspect.Parameter.empty), *config_options(options_class)]
    )
    return analyze


app.command(name="analyze", cls=Command)(user_errors(analyze_command()))


def _jobs(source: Path, options: AnalyzeOptions, on_model: list):
    """The run (None for a features file) and its (epoch, features file, results folder)."""
    from ncood.analyze.driver import check_model_scorers
    from ncood.store.integrity import verify_files
    from ncood.store.members import seed_runs
    from ncood.store.outputs import prepare_out_dir
    from ncood.store.run import RunDir

    if seed_runs(source):
        if options.out is not None:
            raise NcoodError("--out is for a features file; a seeds folder's results go into it")
        return None, _member_jobs(source, options.epoch, options.verify)
    if source.is_file():
        check_model_scorers(on_model, False)
        if options.out is not None:
            prepare_out_dir(options.out)
        return None, [(None, source, options.out)]
    if options.out is not None:
        raise NcoodError("--out is for a features file; a run's results go into the run")
    run = RunDir.open(source)
    epochs = run.select_feature_epochs(options.epoch)
    jobs = [(e, run.features(e), run.analysis_dir(e)) for e in epochs]
    verify_files(run, [str(path.relative_to(run.root)) for _, path, _ in jobs], full=options.verify)
    return run, jobs


def _member_jobs(folder: Path, spec: str, verify: bool) -> list[tuple[int, list[Path], Path]]:
    """A seeds folder's jobs: (epoch, the members' features files, ``folder/analysis/epoch-N``)
    for each epoch of ``spec`` (N, 'last' or 'all') among those every member has features of;
    each run's files checked against its manifest as for one run."""
    from ncood.store.integrity import verify_files
    from ncood.store.members import seed_runs
    from ncood.store.run import RunDir, epoch_name

    runs = [RunDir.open(path) for path in seed_runs(folder)]
    if len(runs) < 2:
        raise NcoodError(
            f"{folder} is neither a run nor a seeds folder of two runs or more "
            f"(`ncood train --seeds 0,1,2 --out {folder}` writes one)"
        )
    common = sorted(set.intersection(*(set(run.feature_epochs()) for run in runs)))
    if not common:
        raise NcoodError(f"the runs of {folder} share no epoch with features")
    if spec in ("all", "last"):
        epochs = common if spec == "all" else common[-1:]
    else:
        try:
            epochs = [int(spec)]
        except ValueError:
            raise NcoodError(f"--epoch must be a number, 'last' or 'all', got {spec!r}") from None
        if epochs[0] not in common:
            raise NcoodError(
                f"epoch {spec} is not among the epochs every run of {folder} has features of "
                f"({', '.join(map(str, common))})"
            )
    for run in runs:
        files = [str(run.features(epoch).relative_to(run.root)) for epoch in epochs]
        verify_files(run, files, full=verify)
    return [
        (epoch, [run.features(epoch) for run in runs], folder / "analysis" / epoch_name(epoch))
        for epoch in epochs
    ]


def _analyze(jobs, scorers, analyses, options: AnalyzeOptions, network: _Network | None):
    """Each job's results, and one line per plugin that failed, under one progress bar."""
    from ncood.analyze.driver import analyze_file, by_default, ood_set_names
    from ncood.progress import progress_bar
    from ncood.store.features import check_readable
    from ncood.store.outputs import one_line_os_errors

    for _, features, _ in jobs:
        for features_path in features if isinstance(features, list) else [features]:
            check_readable(features_path)  # a bad file is one line, before any progress bar
            options.check(ood_set_names(features_path))  # so is a bad --ood / --tune-on
    collected, failures = {}, []
    chosen = [scorers if options.plugins else by_default(scorers, path) for _, path, _ in jobs]
    steps = sum(len(job_scorers) + len(analyses) for job_scorers in chosen)
    with progress_bar(not options.quiet) as progress:
        task = progress.add_task("analyze", total=steps, status="")
        for (job_epoch, features_path, out_dir), job_scorers in zip(jobs, chosen, strict=True):
            which = f"epoch {job_epoch}" if job_epoch is not None else str(features_path)
            with one_line_os_errors(f"the results of {which} were not written (kept as they were)"):
                outcome = analyze_file(
                    features_path,
                    out_dir,
                    job_scorers,
                    analyses,
                    options.settings,
                    options=options,
                    on_step=lambda name, e=job_epoch: progress.update(
                        task, advance=1, status=f"epoch {e} {name}" if e else name
                    ),
                    discard_failed=options.discard_failed,
                    model_inputs=network and functools.partial(network.open, job_epoch, progress),
                )
            collected[job_epoch] = outcome.results
            for name, reason in outcome.reasons().items():
                where = f"{name} (epoch {job_epoch})" if job_epoch is not None else name
                kept = " (its previous result is kept)" if name in outcome.kept else ""
                failures.append(f"{where} failed: {reason}{kept}")
    return collected, failures


class _Network:
    """How the model-based scorers get the network and the batches of each epoch: every
    epoch's weights are checked, and the run's data loaded, before any work (the sha256 of
    the weights too with ``--verify``); :meth:`open` then builds one epoch's inputs."""

    def __init__(self, run, epochs: list[int], scorers: int, options: AnalyzeOptions) -> None:
        from ncood.engine.accel import pick_device
        from ncood.extraction.rerun import check_precision, check_rebuildable, load_run_data

        check_precision(options.precision)
        if options.batch_size is not None and options.batch_size < 1:
            raise NcoodError("--batch-size must be at least 1")
        self.run, self.scorers, self.options = run, scorers, options
        self.device = pick_device(options.device or "auto")
        for epoch in epochs:
            check_rebuildable(run, epoch, options.model, verify=options.verify)
        self.data = load_run_data(run, options.data_dir, show_progress=not options.quiet)

    def open(self, epoch: int, progress) -> ModelInputs:
        """The network of ``epoch`` and its batches, counted on a progress bar of its own."""
        from ncood.extraction.rerun import open_model_inputs

        inputs = open_model_inputs(
            self.run,
            epoch,
            device=self.device,
            data=self.data,
            batch_size=self.options.batch_size,
            precision=self.options.precision,
            show_progress=not self.options.quiet,
            model=self.options.model,
        )
        # test and OOD once per scorer; a pass over train (a fit) adds itself as it starts
        scored = [b for name, b in inputs.splits.items() if name != "train"]
        total = self.scorers * sum(b.count for b in scored)
        task = progress.add_task("network", total=total, status=f"epoch {epoch} {self.device}")
        for batches in inputs.splits.values():
            batches.on_images = lambda n: progress.advance(task, n)
        train, counted = inputs.splits["train"], [total]

        def fit_pass() -> None:
            counted[0] += train.count
            progress.update(task, total=counted[0])

        train.on_start = fit_pass
        return inputs


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
