"""Output folders and the operating system's write errors, as one line a user can act on.

``--out`` may be a file, lie under a file, be read-only, or the disk may fill up midway: each
is a :class:`NcoodError` that says what happened and what was kept, never a traceback. Every
command turns OS errors into that line here (:func:`one_line_os_errors`), nowhere else.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Iterator
from pathlib import Path

from ncood.errors import NcoodError

DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}
NOT_A_FOLDER = {errno.ENOTDIR, errno.EEXIST, errno.EISDIR}
# The errors of a write the user can act on (free space, permissions, a file where a folder
# goes); any other OSError is a fault of its own and keeps its traceback where asked.
WRITE_ERRORS = DISK_FULL | NOT_WRITABLE | NOT_A_FOLDER
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.[0-9a-f]{6}-\d+-[a-z0-9_]+\.tmp$")


def shown_path(filename: object) -> str:
    """A path for a message: a temp file is named after the file it was to become."""
    if filename is None:
        return "?"
    path = Path(str(filename))
    for part in path.parts:
        match = _TEMP_NAME.match(part)
        if match:
            index = path.parts.index(part)
            return str(Path(*path.parts[:index], match["target"]))
    return str(path)


def reason(exc: OSError) -> str:
    if exc.errno in DISK_FULL:
        return "no space left on device"
    if exc.errno in NOT_A_FOLDER:
        return f"{(exc.strerror or type(exc).__name__).lower()} (a file where a folder goes?)"
    return (exc.strerror or type(exc).__name__).lower()


def os_error_line(exc: OSError, kept: str) -> NcoodError:
    """``<reason>: <file>; <kept>`` as the one-line error of a command."""
    return NcoodError(f"{reason(exc)}: {shown_path(exc.filename)}; {kept}")


def prepare_out_dir(path: Path, option: str = "--out") -> Path:
    """Create ``path`` (and its parents) or say in one line why it cannot be an output folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NcoodError(f"{option} {path} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NcoodError(f"cannot create {option} {path}: {reason(exc)}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise NcoodError(f"{option} {path} is not writable")
    return path


@contextlib.contextmanager
def one_line_os_errors(
    kept: str, *, errnos: set[int] | None = None, disk_full: str | None = None
) -> Iterator[None]:
    """Inside, an ``OSError`` becomes ``<reason>: <file>; <kept>`` (e.g. "nothing written,
    the previous report is kept"); with ``errnos``, only those (the others pass as they are);
    with ``disk_full``, a full disk says that instead of ``kept`` (how to go on once freed)."""
    try:
        yield
    except OSError as exc:
        if errnos is not None and exc.errno not in errnos:
            raise
        said = disk_full if disk_full is not None and exc.errno in DISK_FULL else kept
        raise os_error_line(exc, said) from None
