"""Every classification model torchvision builds, as ``torchvision:NAME`` (random init; the
weights come from the user's file)."""

from __future__ import annotations

import difflib

import ncood
from ncood.errors import NcoodError


def build(variant: str, num_classes: int, **kwargs):
    import torchvision

    known = torchvision.models.list_models(module=torchvision.models)
    if variant not in known:
        close = difflib.get_close_matches(variant, known, n=4)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise NcoodError(
            f"torchvision has no classification model {variant!r}{hint}; "
            f"torchvision.models.list_models() lists them"
        )
    return torchvision.models.get_model(variant, weights=None, num_classes=num_classes, **kwargs)


@ncood.hookimpl
def register_models(register):
    register(
        "torchvision:*",
        build,
        "any torchvision classification model: torchvision:resnet50, torchvision:vit_b_16, …",
    )
