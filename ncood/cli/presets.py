"""``ncood presets``: the named training configurations."""

from __future__ import annotations

import typer

from ncood.cli.app import Command, app, user_errors


@app.command(cls=Command)
@user_errors
def presets() -> None:
    """List the training presets."""
    from ncood.engine.presets import preset_registry

    registry = dict(preset_registry().items())
    column = max((len(name) for name in registry), default=0)
    for name, preset in registry.items():
        config = preset.config
        controls = ("" if config.head == "linear" else f", {config.head} head") + (
            "" if config.loss == "ce" else f", {config.loss} loss"
        )
        typer.echo(
            f"{name:{column}} {config.dataset} vs {','.join(config.ood)}, {config.epochs} epochs, "
            f"{config.schedule}, width {config.width}{controls}"
        )
