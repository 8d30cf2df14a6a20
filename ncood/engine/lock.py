"""One writer per run directory: an advisory lock (``flock``) on ``RUN_DIR/.ncood.lock``.

``flock`` rather than an ``O_EXCL`` marker file because the kernel drops the lock when its
holder dies, even by SIGKILL: a killed run can be resumed at once, with no stale lock to
clean, while a second live process is refused with the first one's pid.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from ncood.errors import NcoodError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None


def _try_lock(fd: int) -> bool:
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    import msvcrt

    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


class RunLock:
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            raise NcoodError(
                f"{self.path.parent} is being written by another ncood process ({holder}); "
                f"wait for it to finish, or use another --out"
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            if fcntl is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
