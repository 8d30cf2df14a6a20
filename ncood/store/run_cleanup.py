"""What ncood may delete in a run folder: its own files, never anyone else's.

``train --force`` replaces a run; the folder may also hold the user's notes, a foreign
project's files, or be a foreign project altogether that happens to have a ``manifest.json``.
Only a folder whose manifest says ``"format": "ncood-run"`` is replaced, and only the files
whose names ncood writes (below) are removed; everything else stays, symbolic links
included (ncood never makes one, so one is never ncood's).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path

from ncood.errors import NcoodError
from ncood.store.atomic import clean_stale, stale_writer
from ncood.store.run import MANIFEST, RUN_FORMAT

OWN_FILES = re.compile(
    r"^(?:manifest\.json|history\.json"
    r"|(?:checkpoints|features)/epoch-\d{4,}\.safetensors"
    r"|analysis/epoch-\d{4,}/(?:results\.json|scores(?:-[0-9a-f]{32})?\.safetensors"
    r"|tsne\.safetensors)"
    r"|state/(?:state\.json|epoch-\d{4,}\.safetensors))$"
)
OWN_FOLDERS = re.compile(r"^(?:checkpoints|features|state|analysis|analysis/epoch-\d{4,})$")


def is_ncood_run(root: Path) -> bool:
    """Whether ``root``'s manifest is provably an ncood run's (its format key)."""
    path = root / MANIFEST
    if path.is_symlink() or not path.is_file():
        return False
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == RUN_FORMAT


def clear_run(root: Path) -> list[Path]:
    """Remove ncood's files from the run at ``root``; returns the files it kept."""
    if not is_ncood_run(root):
        raise NcoodError(
            f"{root} has a {MANIFEST} that is not an ncood run's; --force only replaces "
            f"ncood runs (use another --out)"
        )
    clean_stale(root, recursive=True)
    kept: list[Path] = []
    folders: list[str] = []
    for folder, dirs, files in os.walk(root):  # symbolic links to folders are not entered
        relative_folder = Path(folder).relative_to(root)
        for name in files:
            path = Path(folder) / name
            relative = (relative_folder / name).as_posix()
            if OWN_FILES.match(relative) and not path.is_symlink():
                path.unlink()
            elif relative != ".ncood.lock":
                kept.append(path)
        folders += [(relative_folder / d).as_posix() for d in dirs]
    for relative in sorted(folders, key=len, reverse=True):  # deepest first
        path = root / relative
        if OWN_FOLDERS.match(relative) and not path.is_symlink():
            with contextlib.suppress(OSError):  # it holds someone else's files
                path.rmdir()
    return kept


def foreign_files(root: Path) -> list[Path]:
    """Files in ``root`` that ncood did not write (symbolic links included)."""
    found = []
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            relative = path.relative_to(root).as_posix()
            if relative == ".ncood.lock" or stale_writer(name):
                continue
            if path.is_symlink() or not OWN_FILES.match(relative):
                found.append(path)
    return sorted(found)
