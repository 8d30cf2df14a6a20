"""``ncood plugins``: what the loaded plugins are and contribute."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ncood.cli.app import Command, app, user_errors


@app.command("plugins", cls=Command)
@user_errors
def list_plugins(
    builtins: Annotated[
        bool, typer.Option("--builtins/--no-builtins", help="Include the built-in plugins.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List the loaded plugins and what each contributes."""
    from ncood.host.loading import host

    plugin_host = host()
    contributions: dict[str, list[str]] = {}
    registries = (
        plugin_host.scorers(),
        plugin_host.analyses(),
        plugin_host.report_sections(),
        plugin_host.models(),
        plugin_host.datasets(),
        plugin_host.presets(),
    )
    for registry in registries:
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
            "broken": info.error or None,
        }
        for info in plugin_host.plugins()
        if builtins or not info.builtin
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        origin = "built-in" if row["builtin"] else row["distribution"]
        broken = f" BROKEN: {row['broken']}" if row["broken"] else ""
        typer.echo(f"{row['name']} {row['version']} ({origin}){broken}")
        for item in row["contributes"]:
            typer.echo(f"    {item}")
