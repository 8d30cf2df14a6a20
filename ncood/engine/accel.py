"""The speed settings of a device: bf16 autocast, channels_last, cudnn.benchmark, torch.compile.

On CUDA, ``auto`` turns on bf16 autocast (no loss scaling needed, unlike fp16), channels_last
(the layout tensor cores want for convolutions), cudnn.benchmark and TF32 for what stays in
fp32. On the CPU everything stays fp32 and contiguous: that is what is fast there, and what the
deterministic tests need.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from ncood.engine.distributed import Cluster
from ncood.engine.presets import TrainConfig
from ncood.errors import NcoodError


@dataclass(frozen=True)
class Accel:
    device: torch.device
    autocast_dtype: torch.dtype | None
    channels_last: bool
    compile: bool

    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def layout(self, batch: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            return batch.contiguous(memory_format=torch.channels_last)
        return batch

    def describe(self) -> dict[str, object]:
        return {
            "device": str(self.device),
            "precision": "bf16" if self.autocast_dtype == torch.bfloat16 else "fp32",
            "channels_last": self.channels_last,
            "compile": self.compile,
        }


def pick_device(name: str, cluster: Cluster = Cluster()) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", cluster.local_rank if cluster.distributed else 0)
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise NcoodError(f"--device {name} asked for, but no CUDA device is available")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise NcoodError(f"unknown device {name!r} (try auto, cpu, cuda, cuda:1)") from None
    if device.type == "cuda" and cluster.distributed:
        return torch.device("cuda", cluster.local_rank)
    return device


def setup_accel(config: TrainConfig, device: torch.device) -> Accel:
    cuda = device.type == "cuda"
    if config.precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise NcoodError("--precision bf16 asked for, but this GPU has no bfloat16 support")
    if config.precision == "bf16" or (
        config.precision == "auto" and cuda and torch.cuda.is_bf16_supported()
    ):
        dtype = torch.bfloat16
    else:
        dtype = None
    channels_last = cuda if config.channels_last is None else config.channels_last
    if cuda:
        torch.backends.cudnn.benchmark = not config.deterministic
        torch.backends.cudnn.deterministic = config.deterministic
        torch.backends.cuda.matmul.allow_tf32 = not config.deterministic
        torch.backends.cudnn.allow_tf32 = not config.deterministic
    if config.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    return Accel(device, dtype, channels_last, config.compile)
