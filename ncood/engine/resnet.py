"""ResNet-18 with the TP's CIFAR stem (3×3 conv, stride 1, no max-pool) and a width knob.

``width=64`` is the standard network (512-d features); a smaller width trains on a laptop CPU.
Global average pooling is a mean over the spatial axes (the same numbers as
``AdaptiveAvgPool2d(1)``, but with a deterministic backward on CUDA, which ``--deterministic``
needs). The classifier head runs in fp32 even under autocast: a collapsed network's loss
depends on small logit differences that bf16 would round away, and the head costs
``feature_dim × num_classes`` multiply-adds per image (51k for the TP), nothing.

``head="etf"`` freezes ``fc`` to a simplex ETF with a zero bias (ncood.engine.etf); it stays
an ``nn.Linear`` named ``fc``, so the checkpoints, the features file and every analysis read it
as they read a learned head. ``projector_hidden`` puts Harun et al.'s fixed ETF projector
(D → hidden → D, ReLU between, no bias, output L2-normalized) before ``fc``; the features a
checkpoint dumps are then what ``fc`` reads, the projector's output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ncood.engine.etf import etf_projector_weight, simplex_etf

STAGES = ("layer1", "layer2", "layer3", "layer4")


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """torchvision's ResNet-18 layout; ``fc`` is the classifier head that analyses read."""

    def __init__(
        self,
        num_classes: int,
        width: int = 64,
        in_channels: int = 3,
        *,
        head: str = "linear",
        projector_hidden: int = 0,
        etf_seed: int = 0,
    ) -> None:
        super().__init__()
        widths = [width, 2 * width, 4 * width, 8 * width]
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity()
        in_planes = width
        for index, (name, planes) in enumerate(zip(STAGES, widths, strict=True)):
            stride = 1 if index == 0 else 2
            blocks = nn.Sequential(
                BasicBlock(in_planes, planes, stride), BasicBlock(planes, planes, 1)
            )
            setattr(self, name, blocks)
            in_planes = planes
        dim = widths[-1]
        self.projector = _etf_projector(dim, projector_hidden) if projector_hidden else None
        self.fc = nn.Linear(dim, num_classes)
        if head == "etf":
            _freeze(self.fc, simplex_etf(num_classes, dim, etf_seed))
        self.feature_dim = dim
        self.stage_dims = dict(zip(STAGES, widths, strict=True))

    def encode(
        self, x: torch.Tensor, with_stages: bool = False
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The encoder's pooled output, and the pooled output of each stage when asked."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        pooled: dict[str, torch.Tensor] = {}
        for name in STAGES:
            x = getattr(self, name)(x)
            if with_stages:
                pooled[name] = x.mean((2, 3))
        return x.mean((2, 3)), pooled

    def project(self, encoded: torch.Tensor) -> torch.Tensor:
        """What ``fc`` reads: the encoder's output, through the projector if there is one."""
        if self.projector is None:
            return encoded
        with torch.autocast(encoded.device.type, enabled=False):
            return F.normalize(self.projector(encoded.float()), p=2, dim=1, eps=1e-8)

    def forward_features(
        self, x: torch.Tensor, with_stages: bool = False
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Penultimate features (``fc``'s input), and the pooled output of each stage."""
        encoded, pooled = self.encode(x, with_stages)
        return self.project(encoded), pooled

    def forward(self, x: torch.Tensor, with_encoded: bool = False):
        """The logits; with ``with_encoded``, (logits, the encoder's output) for a loss that
        regularizes the encoder (ncood.engine.losses)."""
        encoded = self.encode(x)[0]
        features = self.project(encoded)
        with torch.autocast(x.device.type, enabled=False):
            logits = self.fc(features.float())
        return (logits, encoded) if with_encoded else logits


def _freeze(layer: nn.Linear, weight: torch.Tensor) -> None:
    """Fix a bias-free layer (a zero bias, when it has one) to ``weight``: never trained, so
    the optimizer (which takes only what requires a gradient) and weight decay never see it."""
    with torch.no_grad():
        layer.weight.copy_(weight.to(layer.weight.dtype))
        if layer.bias is not None:
            layer.bias.zero_()
    for parameter in layer.parameters():
        parameter.requires_grad_(False)


def _etf_projector(dim: int, hidden: int) -> nn.Sequential:
    """Harun et al.'s projector: two fixed bias-free layers, D → hidden → D, ReLU between."""
    projector = nn.Sequential(
        nn.Linear(dim, hidden, bias=False), nn.ReLU(), nn.Linear(hidden, dim, bias=False)
    )
    _freeze(projector[0], etf_projector_weight(hidden, dim, dim))
    _freeze(projector[2], etf_projector_weight(dim, hidden, dim))
    return projector


def network_for(config, num_classes: int) -> ResNet18:
    """The network a run's configuration (a ``TrainConfig``) trains: its width, its head
    (``etf`` built from the run's seed) and its projector."""
    return ResNet18(
        num_classes,
        width=config.width,
        head=config.head,
        projector_hidden=config.etf_projector,
        etf_seed=config.seed,
    )
