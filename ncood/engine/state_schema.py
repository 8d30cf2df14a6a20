"""The shape of ``state/state.json``, checked before a resume trusts it.

A tampered state must be one line, not a ``KeyError`` halfway into restoring the optimizer,
and its ``tensors`` entry may only name the state file of its own epoch (never a path
elsewhere).
"""

from __future__ import annotations

from typing import Any

from ncood.errors import NcoodError
from ncood.store.run import epoch_name
from ncood.store.run_schema import ANY, HISTORY_RECORD, INT, check

STATE_FORMAT = "ncood-state"  # what state.json's "format" says (written by ncood.engine.state)
STATE = {
    "format": "text",
    "format_version": INT,
    "epoch": INT,
    "tensors": "text",
    "optimizer": {"param_groups": [{}], "scalars": {str: {}}},
    "scheduler": {},
    "rng": {"numpy": [ANY], "python": [ANY]},
    "history": [HISTORY_RECORD],
}
REQUIRED = ("format", "epoch", "tensors", "optimizer", "scheduler", "rng", "history")


def check_state(payload: Any, path: object) -> dict[str, Any]:
    if not isinstance(payload, dict) or payload.get("format") != STATE_FORMAT:
        raise NcoodError(f"{path} is not an ncood resume state")
    missing = [key for key in REQUIRED if key not in payload]
    if missing:
        raise NcoodError(f"{path}: the resume state lacks {', '.join(missing)}")
    check(payload, STATE, str(path))
    epoch = payload["epoch"]
    if epoch < 1 or payload["tensors"] != f"{epoch_name(epoch)}.safetensors":
        raise NcoodError(
            f"{path}: the resume state names {payload['tensors']!r} for epoch {epoch}; "
            f"expected {epoch_name(epoch)}.safetensors"
        )
    if len(payload["history"]) != epoch:
        raise NcoodError(
            f"{path}: the resume state holds {len(payload['history'])} history records for "
            f"epoch {epoch}"
        )
    return payload
