"""ResNet-18 with the TP's CIFAR stem (3×3 conv, stride 1, no max-pool) and a width knob.

``width=64`` is the standard network (512-d features); a smaller width trains on a laptop CPU.
Global average pooling is a mean over the spatial axes (the same numbers as
``AdaptiveAvgPool2d(1)``, but with a deterministic backward on CUDA, which ``--deterministic``
needs). The classifier head runs in fp32 even under autocast: a collapsed network's loss
depends on small logit differences that bf16 would round away, and the head costs
``feature_dim × num_classes`` multiply-adds per image (51k for the TP), nothing.
"""

from __future__ import annotations

import torch
from torch import nn

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

    def __init__(self, num_classes: int, width: int = 64, in_channels: int = 3) -> None:
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
        self.fc = nn.Linear(widths[-1], num_classes)
        self.feature_dim = widths[-1]
        self.stage_dims = dict(zip(STAGES, widths, strict=True))

    def forward_features(
        self, x: torch.Tensor, with_stages: bool = False
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Penultimate features, and the pooled output of each stage when asked."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        pooled: dict[str, torch.Tensor] = {}
        for name in STAGES:
            x = getattr(self, name)(x)
            if with_stages:
                pooled[name] = x.mean((2, 3))
        return x.mean((2, 3)), pooled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.forward_features(x)[0]
        with torch.autocast(x.device.type, enabled=False):
            return self.fc(features.float())
