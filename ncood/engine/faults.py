"""Operating-system write errors, turned into the one line a user can act on."""

from __future__ import annotations

import contextlib
import errno
from pathlib import Path

from ncood.errors import NcoodError

DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}
NOT_A_FOLDER = {errno.ENOTDIR, errno.EEXIST, errno.EISDIR}


def explain_write_error(exc: OSError, run_root: Path) -> NcoodError | None:
    where = exc.filename or run_root
    if exc.errno in DISK_FULL:
        return NcoodError(
            f"disk full while writing {where}: free some space, then continue with "
            f"`ncood train --resume {run_root}` (the last complete epoch is kept)"
        )
    if exc.errno in NOT_WRITABLE:
        return NcoodError(f"cannot write {where} ({exc.strerror})")
    if exc.errno in NOT_A_FOLDER:
        return NcoodError(f"cannot write {where} ({exc.strerror}: is --out a file, or under one?)")
    return None


@contextlib.contextmanager
def run_writes(run_root: Path):
    """Inside, a disk-full or permission error is a one-line NcoodError; other errors pass."""
    try:
        yield
    except OSError as exc:
        explained = explain_write_error(exc, run_root)
        if explained is None:
            raise
        raise explained from None
