"""A dispatch mode that records every operation that makes the host wait for the device.

On a GPU these block the CPU until every queued kernel has finished: reading a scalar
(``.item()``, ``float(t)``, ``if t:``), data-dependent shapes (``nonzero``, boolean-mask
indexing, ``masked_select``), comparing tensors for equality, copying to the CPU. On the CPU
they cost nothing, but the dispatcher sees them all the same, so a CPU test catches them.
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode

SYNCING = {
    "_local_scalar_dense",  # .item(), float(t), int(t), bool(t), tolist()
    "item",
    "is_nonzero",
    "nonzero",  # boolean-mask indexing
    "masked_select",
    "equal",
    "unique",
    "_unique2",
}


class HostSyncs(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        if name in SYNCING:
            self.seen.append(name)
        elif name.startswith("index") and _boolean_index(args):
            self.seen.append("boolean-mask indexing")
        elif name in ("_to_copy", "copy_") and _to_host(args, kwargs):
            self.seen.append(f"{name} to the CPU")
        return func(*args, **kwargs)


def _to_host(args, kwargs) -> bool:
    """A copy whose target device is the CPU named explicitly (``.cpu()``, ``.to("cpu")``)."""
    device = kwargs.get("device")
    return device is not None and torch.device(device).type == "cpu"


def _boolean_index(args) -> bool:
    """``x[mask]`` and ``x[mask] = v``: the result's size depends on the mask's contents."""
    indices = args[1] if len(args) > 1 and isinstance(args[1], list | tuple) else ()
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices)
