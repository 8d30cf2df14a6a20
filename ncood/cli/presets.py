"""``ncood presets``: the named training configurations."""

from __future__ import annotations

import typer

from ncood.cli.app import Command, app, user_errors


@app.command(cls=Command)
@user_errors
def presets() -> None:
    """List the training presets."""
    from ncood.engine.presets import preset_registry

    for name, preset in preset_registry().items():
        config = preset.config
        typer.echo(
            f"{name:16} {config.dataset} vs {','.join(config.ood)}, {config.epochs} epochs, "
            f"{config.schedule}, width {config.width}"
        )
