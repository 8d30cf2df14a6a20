"""The run directory: where a training run keeps its manifest, history, weights and features.

    RUN_DIR/manifest.json                      config, seed, versions, dataset, file checksums
    RUN_DIR/history.json                       one record per epoch
    RUN_DIR/checkpoints/epoch-NNNN.safetensors model weights
    RUN_DIR/features/epoch-NNNN.safetensors    see ncood.store.features
    RUN_DIR/analysis/epoch-NNNN/results.json   written by ``ncood analyze``
    RUN_DIR/state/state.json + epoch-NNNN.safetensors   what ``ncood train --resume`` needs
    RUN_DIR/.ncood.lock                        held (flock) by the process writing the run

The format is public: docs/run-format.md describes it for third parties.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ncood.errors import NcoodError
from ncood.store.atomic import write_json
from ncood.store.run_schema import check_history, check_manifest

MANIFEST = "manifest.json"
HISTORY = "history.json"
LOCK = ".ncood.lock"
STATE_DIR = "state"
STATE_JSON = "state.json"
RUN_FORMAT = "ncood-run"
RUN_FORMAT_VERSION = 1
_EPOCH_FILE = re.compile(r"^epoch-(\d{4,})\.safetensors$")


def epoch_name(epoch: int) -> str:
    return f"epoch-{epoch:04d}"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NcoodError(f"{what} not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NcoodError(f"{path} is not valid JSON ({exc})") from None
    except RecursionError:
        raise NcoodError(f"{path} is not valid JSON (nested too deeply)") from None
    except OSError as exc:
        raise NcoodError(f"cannot read {what} {path} ({exc.strerror or exc})") from None


@dataclass(frozen=True)
class RunDir:
    root: Path

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """An existing run; anything else is a one-line user error."""
        root = Path(path)
        if not root.exists():
            raise NcoodError(f"no such run directory: {root}")
        if not (root / MANIFEST).is_file():
            raise NcoodError(f"{root} is not an ncood run (no {MANIFEST})")
        return cls(root)

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    @property
    def history_path(self) -> Path:
        return self.root / HISTORY

    @property
    def lock_path(self) -> Path:
        return self.root / LOCK

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def state_path(self) -> Path:
        return self.state_dir / STATE_JSON

    def state_tensors(self, epoch: int) -> Path:
        return self.state_dir / f"{epoch_name(epoch)}.safetensors"

    def checkpoint(self, epoch: int) -> Path:
        return self.root / "checkpoints" / f"{epoch_name(epoch)}.safetensors"

    def features(self, epoch: int) -> Path:
        return self.root / "features" / f"{epoch_name(epoch)}.safetensors"

    def analysis_dir(self, epoch: int) -> Path:
        return self.root / "analysis" / epoch_name(epoch)

    def results(self, epoch: int) -> Path:
        return self.analysis_dir(epoch) / "results.json"

    @property
    def epochs(self) -> list[int]:
        """The checkpoint epochs that have features, ascending."""
        return self.feature_epochs()

    def feature_epochs(self) -> list[int]:
        folder = self.root / "features"
        if not folder.is_dir():
            return []
        return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _EPOCH_FILE.match(p.name)))

    def select_feature_epochs(self, spec: str | int = "last") -> list[int]:
        """The epochs ``--epoch`` names: ``N``, ``"last"`` or ``"all"`` of those with features."""
        available = self.feature_epochs()
        if not available:
            raise NcoodError(f"{self.root} has no features yet (train it first)")
        if spec == "all":
            return available
        if spec == "last":
            return [available[-1]]
        try:
            wanted = int(spec)
        except ValueError:
            raise NcoodError(f"--epoch must be a number, 'last' or 'all', got {spec!r}") from None
        if wanted not in available:
            raise NcoodError(f"no features for epoch {wanted} (available: {available})")
        return [wanted]

    def analyzed_epochs(self) -> list[int]:
        return [e for e in self.feature_epochs() if self.results(e).is_file()]

    def manifest(self) -> dict[str, Any]:
        manifest = read_json(self.manifest_path, "run manifest")
        if not isinstance(manifest, dict) or manifest.get("format") != RUN_FORMAT:
            raise NcoodError(f"{self.manifest_path} is not an ncood run manifest")
        return check_manifest(manifest, self.manifest_path)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        write_json(self.manifest_path, manifest)

    def history(self) -> list[dict[str, Any]]:
        if not self.history_path.is_file():
            return []
        return check_history(read_json(self.history_path, "history"), self.history_path)

    def write_history(self, history: list[dict[str, Any]]) -> None:
        write_json(self.history_path, history)

    def results_for(self, epoch: int) -> dict[str, Any]:
        return read_json(self.results(epoch), "analysis results")

    def checksums(self) -> dict[str, str]:
        """sha256 of every weights and features file, keyed by path relative to the run."""
        files = sorted((self.root / "checkpoints").glob("*.safetensors"))
        files += sorted((self.root / "features").glob("*.safetensors"))
        return {str(p.relative_to(self.root)): sha256(p) for p in files}

    def file_stats(self, relative_paths) -> dict[str, dict[str, int]]:
        """Size and modification time of each file, so a later read can check it cheaply."""
        stats = {}
        for relative in relative_paths:
            info = (self.root / relative).stat()
            stats[relative] = {"size": info.st_size, "mtime_ns": info.st_mtime_ns}
        return stats
