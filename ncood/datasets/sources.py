"""A published dataset's files under the data folder, opened through torchvision (which reads
each dataset in its published on-disk format and checks the published checksums), with what a
user needs around it: one clear line when the files are missing (naming what to put where),
corrupt (naming the file) or unreadable, and a download attempt, with a timeout, only when it
is allowed. Shared by every plugin that registers such a dataset.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ncood.datasets.base import DataContext
from ncood.errors import NcoodError, one_line

DOWNLOAD_TIMEOUT_S = 30


@dataclass(frozen=True)
class Source:
    """One torchvision dataset split and the files it needs under the data folder."""

    what: str  # "CIFAR-100 (train)"
    hint: str  # what to put in the data folder
    factory: Callable[[str, bool], Any]  # (root, download) → torchvision dataset
    files: Callable[[Path], list[tuple[Path, str | None]]]  # expected files, md5 or None


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def open_source(source: Source, context: DataContext) -> Any:
    """The torchvision dataset, or one :class:`NcoodError` line saying how to get it."""
    from torchvision.datasets.utils import check_integrity

    root = context.root
    try:
        return source.factory(str(root), False)
    except Exception as exc:  # torchvision raises RuntimeError, but a bad file can raise anything
        first_error = exc
    expected = source.files(root)
    corrupt = [p for p, md5 in expected if p.is_file() and md5 and not check_integrity(p, md5)]
    if corrupt:
        raise NcoodError(
            f"{source.what}: {corrupt[0]} is corrupt (checksum mismatch); delete it and "
            f"download again, or replace it with the published file"
        )
    if expected and all(p.is_file() for p, _ in expected):
        raise NcoodError(
            f"could not read {source.what} from {root} ({one_line(first_error, 200)}); "
            f"the files may be damaged: replace them with the published ones"
        )
    if context.download:
        try:
            with _socket_timeout(DOWNLOAD_TIMEOUT_S):
                return source.factory(str(root), True)
        except Exception:
            reason = "and could not be downloaded (no network?)"
    else:
        reason = "and downloading is off (--no-download)"
    raise NcoodError(
        f"{source.what} is not under {root} {reason}: put {source.hint} in {root}, "
        f"or pass --data-dir DIR"
    )
