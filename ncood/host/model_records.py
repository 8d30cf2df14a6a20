"""Rebuilding a model from what a run recorded: a run's files are data, never a choice of code.

A run folder may come from anyone (a colleague's results, a shared benchmark), so the
architecture its manifest names is rebuilt only from what the installed plugins register,
with arguments of plain JSON types that the builder declares and that name no file, folder,
module or callable. A ``package.module:callable`` recorded there is imported only when the
user names it again (``ncood analyze RUN --model NAME``, ``model=`` in the API). Every check
runs before anything is imported; the user's own ``ncood extract --model`` is not concerned.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

from ncood.errors import NcoodError
from ncood.host.model_registry import ModelEntry, ModelRegistry

# A family's variant as recorded: a plain model name (timm's ``resnet50.a1_in1k`` included),
# never a hub reference (``hf-hub:org/name``) or a path (``local-dir:/x``).
_PLAIN_VARIANT = re.compile(r"^[A-Za-z0-9][\w.\-]*$")
# Argument names that, in torchvision, timm, torch.hub or a plugin, say where to load code or
# weights from (timm's pretrained_cfg_overlay, checkpoint_path; hub's repo_or_dir, source…):
# refused whatever their value. Read by words, so that timm's drop_path_rate stays allowed.
_PLACE_NAMES = {"pretrained", "weights", "weights_backbone", "source", "entrypoint", "hubconf"}
_PLACE_FIRST_WORDS = {"pretrained", "checkpoint", "ckpt", "hub", "hf", "cache", "repo", "import"}
_PLACE_LAST_WORDS = {
    "path", "paths", "file", "files", "filename", "dir", "dirs", "folder", "url", "uri", "root",
    "repo", "hub", "module", "callable", "fn", "func", "class", "cls", "ckpt", "checkpoint",
    "cfg", "config", "overlay", "loader", "plugin", "script", "code",
}  # fmt: skip
_CODE_NAME = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_SCALARS = (str, int, float, bool, type(None))


def check_recorded(
    registry: ModelRegistry,
    name: Any,
    arguments: Any,
    *,
    named: str | None = None,
    where: str = "the run",
    base: Path | None = None,
) -> tuple[ModelEntry, str | None]:
    """The entry (and variant) that rebuilds the recorded model ``name`` with ``arguments``,
    or one line saying why a run's files may not choose it. ``named`` is the name the user
    gave (the only way a ``package.module:callable`` is imported); ``base`` is the run's
    folder, where a value that names a file is looked for too."""
    if not isinstance(name, str) or not name:
        raise NcoodError(f"{where}'s manifest records no model name ncood can rebuild")
    if named is not None and named != name:
        raise NcoodError(
            f"--model {named!r}, but {where}'s manifest names the model {name!r}: give that "
            f"name, or leave --model out"
        )
    found = registry.registered(name)
    if found is not None:
        if found[1] is not None and not _PLAIN_VARIANT.match(found[1]):
            raise NcoodError(
                f"{where}'s manifest names the model {name!r}: {found[1]!r} is not a plain "
                f"model name (a run's files never choose a hub or a path to load from)"
            )
    elif registry.is_own_code(name):
        if named != name:
            raise NcoodError(
                f"{where}'s manifest names the model {name!r}, code outside the installed "
                f"plugins, which ncood imports only if you name it: add --model {name} "
                f"(model={name!r} in the API) if you trust it"
            )
        found = registry.resolve(name)  # the user named it: import it
    else:
        known = ", ".join(registry.names()) or "none"
        raise NcoodError(
            f"{where}'s manifest names the model {name!r}, which no installed plugin "
            f"registers (known: {known})"
        )
    check_arguments(found[0], found[1], arguments, name=name, where=where, base=base)
    return found


def rebuild_recorded(
    registry: ModelRegistry,
    name: Any,
    num_classes: Any,
    arguments: Any,
    *,
    named: str | None = None,
    where: str = "the run",
    base: Path | None = None,
):
    """The recorded model, built once :func:`check_recorded` allows it."""
    check_recorded(registry, name, arguments, named=named, where=where, base=base)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise NcoodError(f"{where}'s manifest records no number of classes (got {num_classes!r})")
    return registry.create(name, num_classes, **(arguments or {}))


def check_arguments(
    entry: ModelEntry,
    variant: str | None,
    arguments: Any,
    *,
    name: str,
    where: str,
    base: Path | None = None,
) -> None:
    """Recorded arguments: plain JSON values, declared by the builder, naming no place."""
    if arguments is None:
        return
    if not isinstance(arguments, dict):
        raise NcoodError(f"{where}'s manifest records the arguments of {name!r} as no mapping")
    declared, open_ended = _parameters(entry, variant)
    for key, value in arguments.items():
        said = f"{where}'s manifest gives the model {name!r} the argument {key!r}"
        if not isinstance(key, str) or not key.isidentifier() or key == "num_classes":
            raise NcoodError(f"{said}, which is not an argument ncood passes")
        if key not in declared and not open_ended:
            raise NcoodError(f"{said}, which its builder does not declare")
        if _names_a_place_to_load(key):
            raise NcoodError(
                f"{said}, whose name says where to load code or weights from: a run's files "
                f"never choose that (extract the run again without it)"
            )
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, _SCALARS) for v in values):
            raise NcoodError(
                f"{said}, which is not a plain value (text, number, true/false, null, or a "
                f"list of them)"
            )
        for text in (v for v in values if isinstance(v, str)):
            if _names_a_place(text, base):
                raise NcoodError(
                    f"{said}, whose value {text!r} names a file, a folder or code: a run's "
                    f"files never choose what ncood loads"
                )


def _parameters(entry: ModelEntry, variant: str | None) -> tuple[set[str], bool]:
    """The keyword arguments the builder declares, and whether it takes any (``**kwargs``)."""
    try:
        signature = inspect.signature(entry.builder)
    except (TypeError, ValueError):
        return set(), False
    parameters = list(signature.parameters.values())
    if variant is not None and parameters:
        parameters = parameters[1:]  # a family's builder gets the variant first
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    declared = {p.name for p in parameters if p.kind in keyword}
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    return declared - {"num_classes"}, open_ended


def _names_a_place_to_load(key: str) -> bool:
    words = key.lower().strip("_").split("_")
    return (
        key.lower() in _PLACE_NAMES
        or words[0] in _PLACE_FIRST_WORDS
        or words[-1] in _PLACE_LAST_WORDS
    )


def _names_a_place(text: str, base: Path | None) -> bool:
    """A path, a URL, a ``package.module:callable``, or anything that exists on disk here or
    in the run's folder."""
    if any(mark in text for mark in ("/", "\\", "://", "\0")) or text.startswith(("~", ".")):
        return True
    if _CODE_NAME.match(text):
        return True
    try:
        return Path(text).exists() or (base is not None and (base / text).exists())
    except (OSError, ValueError):
        return True
