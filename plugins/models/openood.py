"""OpenOOD v1.5's CIFAR ResNet-18 as ``openood:resnet18_32x32``, so its released checkpoints
load (the architecture: :mod:`ncood.models.openood_resnet`, imported when a model is built)."""

from __future__ import annotations

import ncood


def build(num_classes: int):
    from ncood.models.openood_resnet import ResNet18_32x32

    return ResNet18_32x32(num_classes)


@ncood.hookimpl
def register_models(register):
    register(
        "openood:resnet18_32x32",
        build,
        "OpenOOD v1.5's CIFAR ResNet-18 (ResNet18_32x32); its released checkpoints load as is",
    )
