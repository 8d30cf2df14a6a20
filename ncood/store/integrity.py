"""Checking that a run's weights and features are the files training wrote.

The manifest records each file's sha256 and, since this check exists, its size and
modification time (``file_stats``). Reading a file checks its size always (free), and its
hash when asked (``--verify``) or when the modification time differs from the record (a file
rewritten in place, or copied without its times): a bit flip never reaches an analysis.
"""

from __future__ import annotations

from ncood.errors import NcoodError
from ncood.store.run import RunDir, sha256


def verify_files(run: RunDir, relative_paths, *, full: bool = False) -> None:
    """Refuse, in one line, the first listed file that does not match the manifest."""
    manifest = run.manifest()
    recorded = manifest.get("files") or {}
    stats = manifest.get("file_stats") or {}
    for relative in relative_paths:
        path = run.root / relative
        if relative not in recorded:
            if manifest.get("status") == "complete" and recorded:
                raise NcoodError(
                    f"{path} is not among the files the run's manifest records; it was not "
                    f"written by this training (remove it, or retrain)"
                )
            continue  # training still running, or a run without checksums
        try:
            info = path.stat()
        except OSError as exc:
            raise NcoodError(f"cannot read {path} ({exc.strerror or exc})") from None
        record = stats.get(relative)
        if record is not None and info.st_size != record["size"]:
            raise NcoodError(
                f"{path} does not match the run's manifest (size {info.st_size} bytes, "
                f"{record['size']} recorded): it changed after training; restore it or retrain"
            )
        changed = record is not None and info.st_mtime_ns != record["mtime_ns"]
        if (full or changed) and sha256(path) != recorded[relative]:
            raise NcoodError(
                f"{path} does not match the run's manifest (its sha256 differs): it changed "
                f"after training; restore it or retrain"
            )


def verify_run(run: RunDir, *, full: bool = True) -> None:
    """Every file the manifest records."""
    verify_files(run, sorted(run.manifest().get("files") or {}), full=full)
