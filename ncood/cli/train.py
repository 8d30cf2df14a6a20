"""``ncood train``: train a ResNet-18 and dump features at each checkpoint."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
from pathlib import Path

import typer

from ncood.cli.app import Command, app, config_options, keyword, parse_option, user_errors
from ncood.cli.app import int_list as _int_list
from ncood.errors import NcoodError
from ncood.store.train_config import TrainConfig

# The options of the command itself; every other option is a field of TrainConfig, derived
# from its declaration (ncood/store/train_config.py) by config_options.
_COMMAND_OPTIONS = {
    "preset": (
        str | None,
        typer.Option(metavar="NAME", help="Named configuration (see `ncood presets`)."),
    ),
    "out": (Path | None, typer.Option(metavar="RUN_DIR", help="Run directory to create.")),
    "resume": (
        Path | None,
        typer.Option(
            metavar="RUN_DIR", help="Continue this run from its last complete epoch (same config)."
        ),
    ),
    "seeds": (
        str | None,
        typer.Option(
            metavar="SEEDS",
            help="Several seeds, e.g. 0,1,2: one run each in OUT/seed-<s>/ (one per GPU under "
            "torchrun).",
        ),
    ),
}
_COMMAND_FLAGS = {
    "dry_run": "Print the resolved configuration and stop.",
    "force": "Replace an existing run in --out.",
    "quiet": "No progress bars.",
}


def train_command(config_class: type = TrainConfig):
    """The ``ncood train`` function for ``config_class`` (its signature is the options)."""

    def train(**given) -> None:
        """Train a ResNet-18 and dump features, logits and labels at each checkpoint.

        Under `torchrun --nproc_per_node=N -m ncood train …` it trains one run with
        DistributedDataParallel, or with --seeds one run per seed on each GPU.
        """
        command = {name: given.pop(name) for name in [*_COMMAND_OPTIONS, *_COMMAND_FLAGS]}
        settings = {name: parse_option(config_class, name, v) for name, v in given.items()}
        movable = {s.name for s in dataclasses.fields(config_class) if s.metadata.get("on_resume")}
        where = {k: v for k, v in settings.items() if k in movable}
        overrides = {k: v for k, v in settings.items() if k not in movable}
        preset, out, resume, force = (command[k] for k in ("preset", "out", "resume", "force"))
        seed_list = _int_list(command["seeds"])
        dry_run, quiet = command["dry_run"], command["quiet"]
        try:
            if resume is not None:
                _refuse_changes_on_resume(overrides, preset, out, force, command["seeds"])
                _resume(resume, where, dry_run=dry_run, quiet=quiet)
                return
            if preset is None or (out is None and not dry_run):
                raise NcoodError("give --preset NAME and --out RUN_DIR (or --resume RUN_DIR)")
            if seed_list is not None and settings.get("seed") is not None:
                raise NcoodError("give --seed or --seeds, not both")
            _start(
                preset,
                overrides | where,
                out,
                seed_list,
                config_class=config_class,
                dry_run=dry_run,
                force=force,
                quiet=quiet,
            )
        except NcoodError:
            if not _speaks(seed_list):
                raise typer.Exit(1) from None  # under torchrun, rank 0 alone says what went wrong
            raise

    train.__signature__ = inspect.Signature(
        [
            *(keyword(n, kind, option, None) for n, (kind, option) in _COMMAND_OPTIONS.items()),
            *config_options(config_class, unset=True),  # unset, the preset's value stands
            *(keyword(n, bool, typer.Option(help=h), False) for n, h in _COMMAND_FLAGS.items()),
        ]
    )
    return train


app.command(name="train", cls=Command)(user_errors(train_command()))


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
    config_class: type,
    dry_run: bool,
    force: bool,
    quiet: bool,
) -> None:
    from ncood.engine.presets import resolve_preset

    config = resolve_preset(preset, config_class=config_class, **overrides)
    if dry_run:
        from ncood.datasets import check_names

        check_names(config.dataset, config.ood, benchmark=config.benchmark)
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
