"""Foreign checkpoints: read their tensors without running their code, fit them to a model.

``.safetensors`` holds tensors only. ``.pt/.pth/.ckpt`` are pickles, read only with
``torch.load(weights_only=True)``: a pickle that needs a class or function outside torch's
allow-list (a code-executing payload, or merely an ``argparse.Namespace``) is refused before
anything in it runs. The state dict may be nested (``state_dict``, ``model``, ``net``), and its
keys prefixed by DDP (``module.``), ``torch.compile`` (``_orig_mod.``) or a Lightning module.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ncood.errors import NcoodError

SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")  # .bin: the Hugging Face hub's pytorch_model.bin
NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net")
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
SHOWN_KEYS = 4  # how many key names an error line shows
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_COMPILED_SEGMENT = re.compile(r"(^|\.)_orig_mod\.")


@dataclass
class Checkpoint:
    """The tensors of one weights file, keys cleaned, and what was done to find them."""

    path: Path
    tensors: dict  # name → torch.Tensor
    notes: list[str] = field(default_factory=list)


def read_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise NcoodError(f"weights file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        loaded, notes = _read_safetensors(path), []
    elif suffix in PICKLE_SUFFIXES:
        loaded, notes = _state_dict_of(_read_pickle(path), path)
    else:
        raise NcoodError(
            f"{path.name}: unknown weights format {suffix or '(no suffix)'!r} "
            f"(expected .safetensors, .pt, .pth, .ckpt or .bin)"
        )
    tensors, stripped = _strip_wrappers(loaded)
    notes += [f"stripped the {p!r} prefix" for p in stripped]
    return Checkpoint(path, tensors, notes)


def _read_safetensors(path: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise NcoodError(f"{path.name} is not a readable safetensors file ({exc})") from None


def _read_pickle(path: Path) -> object:
    import pickle

    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols on stderr
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _GLOBAL.search(str(exc))
        if found:
            raise NcoodError(
                f"{path.name} refused: rebuilding it needs {found.group(1)}, which only a "
                f"code-executing unpickler may call; ncood reads checkpoints with "
                f"torch.load(weights_only=True) only. If you trust the file, re-save its "
                f"state_dict alone (or as .safetensors)"
            ) from None
        raise NcoodError(
            f"{path.name} refused: not a pickle torch.load(weights_only=True) can read safely "
            f"({_weights_only_reason(exc)})"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NcoodError(f"{path.name} is not a readable PyTorch checkpoint ({first})") from None


def _weights_only_reason(exc: Exception) -> str:
    for line in str(exc).splitlines():
        line = line.strip()
        if line.startswith(("Unsupported", "WeightsUnpickler error:")) and len(line) > 25:
            return line.removeprefix("WeightsUnpickler error:").strip()
    return "it holds objects other than tensors and plain containers"


def _is_tensor(value: object) -> bool:
    import torch

    return isinstance(value, torch.Tensor)


def _state_dict_of(obj: object, path: Path, depth: int = 0) -> tuple[dict, list[str]]:
    """The mapping of tensors inside ``obj``: itself, or under one of NESTED_KEYS."""
    if not isinstance(obj, Mapping):
        raise NcoodError(
            f"{path.name} holds a {type(obj).__name__}, not a state dict (a mapping of tensors)"
        )
    tensors = {str(k): v for k, v in obj.items() if _is_tensor(v)}
    if tensors and len(tensors) >= len(obj) / 2:
        return tensors, []
    if depth < 3:
        for key in NESTED_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner:
                found, notes = _state_dict_of(inner, path, depth + 1)
                return found, [f"state dict under {key!r}", *notes]
    keys = ", ".join(repr(str(k)) for k in list(obj)[:SHOWN_KEYS]) or "none"
    raise NcoodError(
        f"{path.name}: no state dict found (top-level keys: {keys}; expected tensors, or "
        f"tensors under {', '.join(repr(k) for k in NESTED_KEYS)})"
    )


def _strip_wrappers(tensors: dict) -> tuple[dict, list[str]]:
    """Drop the names DDP and torch.compile put in front of every key (in any nesting)."""
    stripped: list[str] = []
    cleaned = dict(tensors)
    changed = True
    while changed and cleaned:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in cleaned):
                cleaned = {k[len(prefix) :]: v for k, v in cleaned.items()}
                stripped.append(prefix)
                changed = True
    if any(_COMPILED_SEGMENT.search(k) for k in cleaned):
        cleaned = {_COMPILED_SEGMENT.sub(r"\1", k): v for k, v in cleaned.items()}
        if "_orig_mod." not in stripped:
            stripped.append("_orig_mod.")
    return cleaned, stripped


def fit_weights(model, checkpoint: Checkpoint, arch: str, head: str | None = None) -> list[str]:
    """Load ``checkpoint`` into ``model`` strictly; every mismatch is one line naming keys.

    Returns notes on what was adapted (nesting, prefixes), for the run's manifest.
    """
    tensors, notes = dict(checkpoint.tensors), list(checkpoint.notes)
    expected = model.state_dict()
    tensors, prefix = _strip_foreign_prefix(tensors, expected)
    if prefix:
        notes.append(f"stripped the {prefix!r} prefix")
    name = checkpoint.path.name
    for key, value in tensors.items():
        if key in expected and tuple(value.shape) != tuple(expected[key].shape):
            raise NcoodError(_shape_message(name, arch, key, value, expected[key], head))
    # a checkpoint from before PyTorch 1.0 lacks BatchNorm's counters: keep the model's
    for key, value in expected.items():
        if key.endswith("num_batches_tracked") and key not in tensors:
            tensors[key] = value
    try:
        incompatible = model.load_state_dict(tensors, strict=False)
    except RuntimeError as exc:  # a shape mismatch after the model's own key renames
        detail = next((s.strip() for s in str(exc).splitlines()[1:] if s.strip()), str(exc))
        raise NcoodError(f"weights {name} do not fit {arch}: {detail}") from None
    missing, unexpected = list(incompatible.missing_keys), list(incompatible.unexpected_keys)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({_first(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({_first(unexpected)})")
        raise NcoodError(
            f"weights {name} do not fit {arch}: keys {' and '.join(parts)}; is it the right "
            f"architecture?"
        )
    return notes


def _strip_foreign_prefix(tensors: dict, expected: Mapping) -> tuple[dict, str]:
    """A Lightning-style wrapper (``model.``, ``net.``): every key under one name the model
    does not have, and nothing matching as is."""
    if not tensors or any(k in expected for k in tensors):
        return tensors, ""
    heads = {k.split(".", 1)[0] for k in tensors}
    if len(heads) != 1 or not all("." in k for k in tensors):
        return tensors, ""
    prefix = heads.pop() + "."
    renamed = {k[len(prefix) :]: v for k, v in tensors.items()}
    if not any(k in expected for k in renamed):
        return tensors, ""
    return renamed, prefix


def _shape_message(name: str, arch: str, key: str, got, want, head: str | None) -> str:
    message = (
        f"weights {name} do not fit {arch}: {key} is {_shape(got)} in the file but "
        f"{_shape(want)} in the model"
    )
    if head is not None and key in (f"{head}.weight", f"{head}.bias"):
        message += (
            f" (the checkpoint's classifier has {got.shape[0]} classes, the model was built "
            f"for {want.shape[0]}: check --num-classes or the dataset)"
        )
    return message


def _shape(tensor) -> str:
    return "×".join(str(d) for d in tensor.shape) or "a scalar"


def _first(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN_KEYS])
    return shown + (", …" if len(keys) > SHOWN_KEYS else "")
