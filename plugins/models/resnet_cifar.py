"""ncood's own CIFAR ResNet-18 (what ``ncood train`` trains), as ``resnet18-cifar``.

``--model-arg width=8`` builds a demo-width network. Checkpoints with OpenOOD's key names
(``shortcut`` for the projection) load too: the model renames them as it loads.
"""

from __future__ import annotations

import re

import ncood

_OPENOOD_SHORTCUT = re.compile(r"^(layer\d\.\d+)\.shortcut\.")


def _rename_openood_keys(module, state_dict, prefix, *args) -> None:
    """A load_state_dict pre-hook: OpenOOD's ``shortcut`` is ncood's ``downsample``."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        renamed = prefix + _OPENOOD_SHORTCUT.sub(r"\1.downsample.", key[len(prefix) :])
        if renamed != key:
            state_dict[renamed] = state_dict.pop(key)


def build(num_classes: int, width: int = 64):
    from ncood.engine.resnet import ResNet18  # torch: imported when a model is built

    model = ResNet18(num_classes, width=width)
    model.register_load_state_dict_pre_hook(_rename_openood_keys)
    return model


@ncood.hookimpl
def register_models(register):
    register("resnet18-cifar", build, "ncood's CIFAR ResNet-18 (--model-arg width=N, default 64)")
