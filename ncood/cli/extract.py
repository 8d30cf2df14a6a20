"""``ncood extract``: a model trained anywhere (checkpoints + an architecture name) → a run."""

from __future__ import annotations

import glob
import inspect
from pathlib import Path

import typer

from ncood.cli.app import Command, app, config_options, config_values, keyword, user_errors
from ncood.errors import NcoodError
from ncood.extraction.named import ExtractRequest


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


# The options of the command itself; every other option is a field of ExtractRequest, derived
# from its declaration (ncood/extraction/named.py) by config_options.
_MORE_WEIGHTS = typer.Argument(
    metavar="[FILE]...", help="More weights files (what a glob after --weights gives)."
)


def extract_command(request_class: type = ExtractRequest):
    """The ``ncood extract`` function for ``request_class`` (its signature is the options)."""

    def extract(*, more_weights: list[Path] | None, quiet: bool, **given) -> None:
        """Import a model trained anywhere: run it over the datasets, write an ncood run.

        `ncood analyze` and `ncood report` then work on it; see docs/extract.md.
        """
        from ncood.extraction.named import run_extract

        request = request_class(**config_values(request_class, given))
        request.weights = _expand([*request.weights, *(more_weights or [])])
        run = run_extract(request, show_progress=not quiet)
        if run is None:  # a rank other than 0 under torchrun: rank 0 speaks
            return
        evaluation = run.manifest()["evaluation"][-1]
        typer.echo(
            f"run written to {run.root} ({len(run.feature_epochs())} epoch(s); epoch "
            f"{evaluation['epoch']}: train acc {evaluation['train_acc']:.4f}, "
            f"test acc {evaluation['test_acc']:.4f})"
        )

    extract.__signature__ = inspect.Signature(
        [
            keyword("more_weights", list[Path] | None, _MORE_WEIGHTS, None),
            *config_options(request_class),
            keyword("quiet", bool, typer.Option(help="No progress bar."), False),
        ]
    )
    return extract


app.command(name="extract", cls=Command)(user_errors(extract_command()))
