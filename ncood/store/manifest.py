"""The run manifest (manifest.json), built in one place for a run ncood trains and one it imports.

Its sections, their order and their types are the run schema's (``MANIFEST`` in
ncood.store.run_schema, docs/run-format.md): :func:`new_manifest` writes the format first, then
the sections in the schema's order, and checks the result against it, so a manifest ncood
writes is one it reads back. A trained run (ncood.engine.train) has no ``source``; an imported
one (ncood.extraction.imported) says ``source: imported`` and records its weights files and
their evaluation instead of a history.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ncood.store.run import RUN_FORMAT, RUN_FORMAT_VERSION
from ncood.store.run_schema import MANIFEST, check_manifest

IMPORTED = "imported"  # the ``source`` of a run extracted from a model trained elsewhere


def is_imported(manifest: dict) -> bool:
    """Whether the run was extracted from a model trained elsewhere (``ncood extract``)."""
    return manifest.get("source") == IMPORTED


_HEADER = ("format", "format_version")


def now() -> str:
    """A manifest's timestamps (created, finished, a resume's): UTC, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_manifest(
    *,
    status: str,
    created: str,
    config: dict[str, Any],
    versions: dict[str, str],
    device: str,
    dataset: dict[str, Any],
    model: dict[str, Any],
    files: dict[str, str],
    **sections: Any,
) -> dict[str, Any]:
    """A new run's manifest: what every run records, and the schema's other ``sections``
    its source adds (``source``, ``seed``, ``acceleration``, ``weights`` …), one keyword each."""
    sections |= {
        "status": status,
        "created": created,
        "config": config,
        "versions": versions,
        "device": device,
        "dataset": dataset,
        "model": model,
        "files": files,
    }
    unknown = sorted(key for key in sections if key not in MANIFEST or key in _HEADER)
    if unknown:
        raise TypeError(f"not a section of the run manifest: {', '.join(unknown)}")
    manifest: dict[str, Any] = {"format": RUN_FORMAT, "format_version": RUN_FORMAT_VERSION}
    manifest |= {key: sections[key] for key in MANIFEST if key in sections}
    return check_manifest(manifest, "the new run manifest")
