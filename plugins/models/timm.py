"""timm's models as ``timm:NAME`` when timm is installed (it is optional)."""

from __future__ import annotations

import sys

import ncood
from ncood.errors import NcoodError


def build(variant: str, num_classes: int, **kwargs):
    try:
        import timm
    except ImportError:
        raise NcoodError(
            f"timm:{variant} needs timm, which is not installed; install it with "
            f"`{sys.executable} -m pip install timm`"
        ) from None
    if not timm.is_model(variant):
        raise NcoodError(f"timm has no model {variant!r}; timm.list_models('*name*') lists them")
    return timm.create_model(variant, pretrained=False, num_classes=num_classes, **kwargs)


@ncood.hookimpl
def register_models(register):
    register("timm:*", build, "timm's models (pip install timm): timm:resnet50, timm:vit_small_…")
