"""Atomic writes: a temp file in the target's folder, fsync, then ``os.replace``.

A killed process leaves either the old file or the new one, never a half-written file that
looks valid. What a SIGKILL can leave is the hidden temp file itself; its name carries the
writer's host and pid (``.NAME.<host>-<pid>-<random>.tmp``), so :func:`clean_stale` can tell
a dead writer's leftover from a live writer's file in progress and remove only the former.
Files get the mode any tool would give them (``0666 & ~umask``), or keep the mode of the
file they replace.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_STALE_FILE = re.compile(r"^\..+\.(?P<host>[0-9a-f]{6})-(?P<pid>\d+)-[a-z0-9_]+\.tmp$")


def host_tag() -> str:
    """Six hex digits naming this machine, so a pid is only judged on the host that owns it."""
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]


def writer_tag() -> str:
    return f"{host_tag()}-{os.getpid()}"


def umask() -> int:
    """The process umask, read without changing it where the OS allows."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    current = os.umask(0o022)
    os.umask(current)
    return current


def default_mode(directory: bool = False) -> int:
    return (0o777 if directory else 0o666) & ~umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path; on success it replaces ``path`` in one rename."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.{writer_tag()}-", suffix=".tmp", dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        try:
            mode = target.stat().st_mode & 0o7777
        except OSError:
            mode = default_mode()
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def fsync_folder(folder: str | os.PathLike) -> None:
    """Make the renames done in ``folder`` durable, in order (a crash of the machine, not only
    of the process, keeps them in the order they were made); a no-op where folders cannot be
    opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a folder: the renames are still atomic
    finally:
        os.close(fd)


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold an advisory lock (``flock``) on ``folder`` itself, waiting for another holder:
    writers that read, merge and rewrite the files of one folder take turns. No lock file is
    made, and the kernel drops the lock when its holder dies (even by SIGKILL). Where folders
    cannot be locked (Windows, some network filesystems) it does nothing."""
    try:
        import fcntl
    except ImportError:  # Windows
        fcntl = None
    fd = None
    if fcntl is not None:
        try:
            fd = os.open(folder, os.O_RDONLY)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            if fd is not None:
                os.close(fd)
            fd = None
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)  # closing the last descriptor releases the lock


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def staging_dir(parent: Path, name: str) -> Path:
    """A new hidden folder in ``parent`` to build ``name`` in before it is renamed into place
    (same naming as the temp files, so a dead writer's is cleaned the same way)."""
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{name}.{writer_tag()}-", suffix=".tmp", dir=parent))
    os.chmod(folder, default_mode(directory=True))
    return folder


@contextlib.contextmanager
def private_temp_dir(prefix: str) -> Iterator[Path]:
    """A fresh 0700 folder in the system's temp folder, removed afterwards; its name carries
    the pid so that :func:`clean_stale` removes it if ncood is killed meanwhile."""
    folder = Path(tempfile.mkdtemp(prefix=f"{prefix}-{writer_tag()}-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def stale_writer(name: str, prefix: str | None = None) -> bool:
    """Whether ``name`` is a temp file (or folder) of a writer on this host that is dead."""
    if prefix is not None:
        match = re.match(rf"^{re.escape(prefix)}-(?P<host>[0-9a-f]{{6}})-(?P<pid>\d+)-\w+$", name)
    else:
        match = _STALE_FILE.match(name)
    if match is None or match["host"] != host_tag():
        return False
    pid = int(match["pid"])
    return pid != os.getpid() and not pid_alive(pid)


def clean_stale(folder: Path, prefix: str | None = None, recursive: bool = False) -> list[Path]:
    """Remove the temp files and folders of dead writers in ``folder``; returns them."""
    removed: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        if stale_writer(entry.name, prefix):
            try:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            except OSError:
                continue  # not ours to remove (another user's, read-only): leave it
            removed.append(entry)
        elif recursive and entry.is_dir() and not entry.is_symlink():
            removed += clean_stale(entry, prefix, recursive=True)
    return removed
