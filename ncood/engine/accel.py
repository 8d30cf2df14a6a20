"""The speed settings of a device: bf16 autocast, channels_last, cudnn.benchmark, TF32, compile.

On CUDA, ``auto`` turns on bf16 autocast where the GPU computes bfloat16 natively (compute
capability 8.0 and later; older GPUs only emulate it, slower than fp32), channels_last (the
layout tensor cores want for convolutions), cudnn.benchmark and TF32 for what stays in fp32.
On the CPU everything stays fp32 and contiguous unless asked: that is what is fast there, and
what the deterministic tests need. Feature extraction ignores all of it and runs in exact fp32
(:func:`exact_fp32`): the analyses read those numbers.

No function here touches a GPU other than the chosen one: ``--device cuda:1`` makes cuda:1 the
current device before anything else, and every query names the device.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ncood.engine.distributed import Cluster
from ncood.errors import NcoodError
from ncood.store.train_config import TrainConfig

NATIVE_BF16_CAPABILITY = (8, 0)  # Ampere: bf16 tensor cores; earlier GPUs emulate bf16
CUBLAS_DETERMINISTIC = ":4096:8"  # cuBLAS's fixed-workspace setting for reproducible GEMMs
COMPILE_MODES = ("default", "reduce-overhead")


@dataclass(frozen=True)
class Accel:
    device: torch.device
    autocast_dtype: torch.dtype | None
    channels_last: bool
    compile: bool
    cuda_graphs: bool = False  # compile with mode="reduce-overhead" (CUDA graphs on CUDA)

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
            "cuda_graphs": self.cuda_graphs,
        }


def pick_device(name: str, cluster: Cluster = Cluster()) -> torch.device:
    """``auto`` and ``cuda`` are this process's GPU (its local rank under torchrun) or the
    CPU; ``cuda:N`` is GPU N (under torchrun, each process takes its local rank's GPU)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", cluster.local_rank)
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise NcoodError(f"--device {name} asked for, but no CUDA device is available")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise NcoodError(f"unknown device {name!r} (try auto, cpu, cuda, cuda:1)") from None
    if device.type == "cuda":
        if cluster.distributed:
            return torch.device("cuda", cluster.local_rank)
        index = cluster.local_rank if device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise NcoodError(
                f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
        return torch.device("cuda", index)
    if device.type == "meta":  # shapes without values: every forward would fail later
        raise NcoodError(f"--device {name}: the meta device holds no values; give cpu or cuda")
    try:
        torch.zeros(1, device=device).cpu()
    except (RuntimeError, NotImplementedError) as exc:  # a backend this machine lacks (mps)
        why = str(exc).strip().split(". ")[0].splitlines()[0][:120] if str(exc).strip() else ""
        raise NcoodError(
            f"--device {name} is not usable here ({why or type(exc).__name__})"
        ) from None
    return device


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively (``is_bf16_supported`` also counts
    emulation, which is slower than fp32)."""
    if device.type != "cuda":
        return False
    return tuple(torch.cuda.get_device_capability(device)) >= NATIVE_BF16_CAPABILITY


def prepare_determinism(deterministic: bool) -> None:
    """cuBLAS reads CUBLAS_WORKSPACE_CONFIG when CUDA starts: call before any CUDA work."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC)


def setup_accel(config: TrainConfig, device: torch.device) -> Accel:
    cuda = device.type == "cuda"
    if cuda and config.deterministic and "CUBLAS_WORKSPACE_CONFIG" not in os.environ:
        if torch.cuda.is_initialized():  # too late: cuBLAS has read its configuration
            raise NcoodError(
                "--deterministic on CUDA needs CUBLAS_WORKSPACE_CONFIG=:4096:8 set before CUDA "
                "starts: set it in the environment"
            )
        prepare_determinism(True)
    if cuda:
        torch.cuda.set_device(device)  # cuda:1 alone gets a context, never cuda:0
    if config.precision == "bf16" and cuda and not native_bf16(device):
        major, minor = torch.cuda.get_device_capability(device)
        raise NcoodError(
            f"--precision bf16 asked for, but {device} (compute capability {major}.{minor}) "
            f"only emulates bfloat16, slower than fp32: use --precision fp32 or auto"
        )
    if config.precision == "bf16" or (config.precision == "auto" and native_bf16(device)):
        dtype = torch.bfloat16
    else:
        dtype = None
    channels_last = cuda if config.channels_last is None else config.channels_last
    if cuda:
        torch.backends.cudnn.benchmark = not config.deterministic
        torch.backends.cudnn.deterministic = config.deterministic
        set_tf32(not config.deterministic)
    if config.deterministic:
        torch.use_deterministic_algorithms(True)
    compiled = config.compile or config.cuda_graphs
    return Accel(device, dtype, channels_last, compiled, config.cuda_graphs)


def compile_model(model: torch.nn.Module, accel: Accel, backend=None) -> torch.nn.Module:
    """Static shapes: one graph for the full batch, one for the short last batch, no dynamic
    graph; ``cuda_graphs`` replays each graph as a CUDA graph (``reduce-overhead``)."""
    options: dict[str, object] = {"dynamic": False}
    if backend is not None:
        options["backend"] = backend
    elif accel.cuda_graphs:
        options["mode"] = "reduce-overhead"
    return torch.compile(model, **options)


# --- TF32: on for training speed, off for exact extraction. ---------------------------------
# torch ≥ 2.9 has per-backend ``fp32_precision`` settings and refuses to read the legacy
# ``allow_tf32`` flags once they are set; older torch has only the legacy flags.


def _precision_settings() -> list[object]:
    """The backends whose float32 math can be reduced (new API), or [] with the legacy API."""
    matmul = torch.backends.cuda.matmul
    try:
        matmul.fp32_precision  # noqa: B018 - probing the API
    except (AttributeError, RuntimeError):
        return []
    settings = [matmul, torch.backends.cudnn.conv]
    mkldnn = torch.backends.mkldnn
    for name in ("matmul", "conv"):
        backend = getattr(mkldnn, name, None)
        if backend is not None and hasattr(backend, "fp32_precision"):
            settings.append(backend)
    return settings


def set_tf32(enabled: bool) -> None:
    """TF32 for the CUDA matmuls and convolutions that run in fp32."""
    settings = _precision_settings()
    if settings:
        value = "tf32" if enabled else "ieee"
        torch.backends.cuda.matmul.fp32_precision = value
        torch.backends.cudnn.conv.fp32_precision = value
    else:
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled


@contextlib.contextmanager
def exact_fp32() -> Iterator[None]:
    """Every float32 matmul and convolution in full IEEE precision inside the block (no
    autocast, even inside a caller's autocast region; no TF32; no reduced-precision CPU
    kernels), the previous settings restored after."""
    settings = _precision_settings()
    matmul_precision = torch.get_float32_matmul_precision()
    if settings:
        saved = [(backend, backend.fp32_precision) for backend in settings]
        for backend, _ in saved:
            backend.fp32_precision = "ieee"
    else:
        saved_legacy = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        with contextlib.ExitStack() as no_autocast:
            for device_type in ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",):
                no_autocast.enter_context(torch.autocast(device_type, enabled=False))
            yield
    finally:
        torch.set_float32_matmul_precision(matmul_precision)
        if settings:
            for backend, value in saved:
                backend.fp32_precision = value
        else:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved_legacy
