"""A tiny network and a small imported run for the tests of network scorers (shared by tests in
several folders, so it lives here rather than in one test module)."""

from __future__ import annotations

from pathlib import Path

import torch
from cli_helpers import runner
from torch import nn

from ncood.cli import app
from ncood.extraction.rerun import find_stages
from ncood.host.network import Network
from ncood.store.run import RunDir

CLASSES = 3
STD = (0.25, 0.5, 0.3)


class TinyCNN(nn.Module):
    """Three conv stages (containers, so find_stages sees them), pooling, an optional dropout,
    a linear head."""

    def __init__(self, dropout: bool = False) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(8, 12, 3, 2, 1), nn.BatchNorm2d(12), nn.ReLU())
        self.stage3 = nn.Sequential(nn.Conv2d(12, 16, 3, 2, 1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.3) if dropout else nn.Identity()
        self.fc = nn.Linear(16, CLASSES)

    def maps(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage3(self.stage2(self.stage1(x)))

    def head(self, maps: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.pool(maps).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.maps(x))


class TinyNet(nn.Module):
    """A one-conv CNN whose head is ``fc``: a model a test plugin registers."""

    def __init__(self, num_classes: int, width: int = 4) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.body(x), 1))


def pattern_batches() -> dict:
    """The network scorers' test data (``Batches``, 25 images a batch): ID images are a class
    pattern plus noise, OOD smoother blobs of another scale."""
    from ncood.testing import batches

    generator = torch.Generator().manual_seed(0)
    patterns = torch.randn(CLASSES, 3, 16, 16, generator=generator)

    def in_distribution(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(n) % CLASSES
        noise = 0.6 * torch.randn(n, 3, 16, 16, generator=generator)
        return patterns[labels] + noise, labels

    ood = torch.randn(40, 3, 4, 4, generator=generator).repeat_interleave(4, 2)
    ood = 1.5 * ood.repeat_interleave(4, 3)
    return {
        "train": batches("train", *in_distribution(90)),
        "test": batches("test", *in_distribution(60)),
        "ood": batches("ood/blobs", ood, torch.full((40,), -1)),
    }


def tiny_network(dropout: bool = False, module: nn.Module | None = None) -> Network:
    torch.manual_seed(3)
    module = module or TinyCNN(dropout)
    for bn in (m for m in module.modules() if isinstance(m, nn.BatchNorm2d)):
        bn.running_mean.uniform_(-0.2, 0.2)  # eval and train mode differ: a mode slip shows
        bn.running_var.uniform_(0.5, 1.5)
    module.eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    sample = torch.zeros(2, 3, 16, 16)
    return Network(module, torch.device("cpu"), "fc", find_stages(module, "fc", sample), STD)


def imported_run(root: Path) -> RunDir:
    """``ncood extract`` of a seeded resnet18-cifar (width 4) over digits, in ``root/run``."""
    from ncood.engine.resnet import ResNet18

    torch.manual_seed(3)
    torch.save(ResNet18(10, width=4).state_dict(), root / "epoch_2.pth")
    args = ["extract", "--model", "resnet18-cifar", "--model-arg", "width=4", "--weights"]
    args += [str(root / "epoch_2.pth"), "--dataset", "digits", "--ood", "photos,noise"]
    args += ["--image-size", "24", "--limit", "50", "--out", str(root / "run"), "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return RunDir.open(root / "run")
