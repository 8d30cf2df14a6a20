"""OpenOOD v1.5's CIFAR ResNet-18 (``ResNet18_32x32``), so its released checkpoints load.

In the core, not in the plugin that registers it, so that listing plugins imports no torch.

Written for ncood from the architecture's description: a 3×3 stride-1 stem without max-pool,
four stages of two basic blocks (64, 128, 256, 512 channels), global average pooling and a
linear ``fc``. The module names are OpenOOD's, so are the state-dict keys: a block's
projection is ``shortcut.0`` (conv) and ``shortcut.1`` (BatchNorm), an identity shortcut has
no parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

STAGE_PLANES = (64, 128, 256, 512)
BLOCKS_PER_STAGE = 2


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        projection = stride != 1 or in_planes != planes
        self.shortcut = (
            nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )
            if projection
            else nn.Sequential()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18_32x32(nn.Module):  # noqa: N801 (OpenOOD's name, kept so users recognise it)
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, STAGE_PLANES[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(STAGE_PLANES[0])
        in_planes = STAGE_PLANES[0]
        for index, planes in enumerate(STAGE_PLANES):
            first_stride = 1 if index == 0 else 2
            blocks = [BasicBlock(in_planes, planes, first_stride)]
            blocks += [BasicBlock(planes, planes, 1) for _ in range(BLOCKS_PER_STAGE - 1)]
            self.add_module(f"layer{index + 1}", nn.Sequential(*blocks))
            in_planes = planes
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(STAGE_PLANES[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))
