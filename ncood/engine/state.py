"""The resume state: everything needed to continue a run exactly where an epoch ended.

Written at the end of every epoch in two atomic steps: the tensors (model, optimizer buffers,
RNG states) go to ``state/epoch-NNNN.safetensors``, then ``state/state.json`` (scheduler,
optimizer hyper-parameters, RNG scalars, history) is replaced so that it names that file; only
then are older tensor files deleted. A kill at any moment leaves a ``state.json`` naming a
complete tensors file. No pickle: safetensors and JSON only.

The data order and the augmentation of an epoch are drawn from (seed, epoch) alone
(ncood.engine.batches), so the RNG states are saved for completeness, not because the
training loop draws from them.
"""

from __future__ import annotations

import collections
import random
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ncood.engine.state_schema import STATE_FORMAT, check_state
from ncood.errors import NcoodError
from ncood.store.atomic import write_json
from ncood.store.run import RunDir, read_json
from ncood.store.streamed import write_arrays

STATE_FORMAT_VERSION = 1
CUDA_RNG_PREFIX = "rng/cuda/"


@dataclass
class Snapshot:
    """A copy of the training state on the CPU, ready to be written (possibly in a thread)."""

    epoch: int
    tensors: dict[str, torch.Tensor]
    payload: dict[str, Any]


def _jsonable(value: Any) -> Any:
    if isinstance(value, collections.Counter):  # MultiStepLR's milestones
        return {"__counter__": [[k, v] for k, v in sorted(value.items())]}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.item()
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__counter__"}:
            return collections.Counter({k: v for k, v in value["__counter__"]})
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def snapshot(
    epoch: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    history: list[dict[str, Any]],
    extra: dict[str, Any] | None = None,
    device: torch.device | None = None,
) -> Snapshot:
    tensors: dict[str, torch.Tensor] = {
        f"model/{k}": v.detach().to("cpu", copy=True).contiguous()
        for k, v in model.state_dict().items()
    }
    optimizer_state = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in optimizer_state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{index}/{key}"] = value.detach().to("cpu", copy=True)
            else:
                scalars.setdefault(str(index), {})[key] = value
    tensors["rng/torch"] = torch.get_rng_state()
    if device is not None and device.type == "cuda":  # this process's GPU only: no context
        index = torch.cuda.current_device() if device.index is None else device.index
        tensors[f"rng/cuda/{index}"] = torch.cuda.get_rng_state(index)  # on the others
    numpy_state = np.random.get_state()
    tensors["rng/numpy"] = torch.from_numpy(numpy_state[1].astype(np.int64))
    python_state = random.getstate()
    payload = {
        "format": STATE_FORMAT,
        "format_version": STATE_FORMAT_VERSION,
        "epoch": epoch,
        "optimizer": {
            "param_groups": _jsonable(optimizer_state["param_groups"]),
            "scalars": _jsonable(scalars),
        },
        "scheduler": _jsonable(scheduler.state_dict()),
        "rng": {
            "numpy": [numpy_state[0], *(_jsonable(list(numpy_state[2:])))],
            "python": [python_state[0], list(python_state[1]), python_state[2]],
        },
        "history": [dict(record) for record in history],  # the loop keeps appending
        **(extra or {}),
    }
    return Snapshot(epoch, tensors, payload)


def write_snapshot(run: RunDir, state: Snapshot) -> None:
    """Tensors first, then the JSON that points at them, then the old tensors go."""
    path = run.state_tensors(state.epoch)
    arrays = {name: tensor.numpy() for name, tensor in state.tensors.items()}
    write_arrays(path, arrays, {"format": STATE_FORMAT, "epoch": str(state.epoch)})
    write_json(run.state_path, {**state.payload, "tensors": path.name})
    for old in run.state_dir.glob("epoch-*.safetensors"):
        if old.name != path.name:
            old.unlink(missing_ok=True)


@dataclass
class SavedState:
    epoch: int
    payload: dict[str, Any]
    tensors: dict[str, torch.Tensor]

    @property
    def history(self) -> list[dict[str, Any]]:
        return list(self.payload.get("history", []))


def read_state(run: RunDir) -> SavedState | None:
    """The last complete state, or None when the run died before its first epoch ended.

    A run that finished epochs but lost its state cannot continue exactly: refused, never
    silently restarted from epoch 0."""
    if not run.state_path.is_file():
        finished = len(run.history())
        if finished or run.feature_epochs():
            raise NcoodError(
                f"{run.state_path} is missing but the run finished {finished} epoch(s): it "
                f"cannot continue where it stopped (restore {run.state_dir}, or start again "
                f"with --force)"
            )
        return None
    payload = check_state(read_json(run.state_path, "resume state"), run.state_path)
    path: Path = run.state_dir / payload["tensors"]
    try:
        tensors = load_file(str(path))
    except (FileNotFoundError, SafetensorError, OSError) as exc:
        raise NcoodError(f"the resume state {path} is unreadable ({exc})") from None
    return SavedState(payload["epoch"], payload, tensors)


def cuda_rng_key(names, device_index: int) -> str | None:
    """The saved CUDA RNG state for this GPU: its own when saved (a run resumed on the same
    GPU), else the lowest-numbered one (a run moved to another GPU); keys compare as numbers
    (``rng/cuda/10`` after ``rng/cuda/9``)."""
    keys = sorted(
        (name for name in names if name.startswith(CUDA_RNG_PREFIX)),
        key=lambda name: int(name[len(CUDA_RNG_PREFIX) :]),
    )
    own = f"{CUDA_RNG_PREFIX}{device_index}"
    return own if own in keys else (keys[0] if keys else None)


def restore(
    saved: SavedState,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    device: torch.device | None = None,
) -> None:
    """Load the saved state into freshly built objects (same config, same parameter order);
    a state that does not fit them (tampered, another model) is one line."""
    try:
        _restore(saved, model, optimizer, scheduler, device)
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NcoodError(
            f"the resume state does not fit this run's model and optimizer ({first:.200})"
        ) from None


def _restore(
    saved: SavedState,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    device: torch.device | None,
) -> None:
    prefix = "model/"
    model.load_state_dict(
        {k[len(prefix) :]: v for k, v in saved.tensors.items() if k.startswith(prefix)}
    )
    per_param: dict[int, dict[str, Any]] = {}
    for name, tensor in saved.tensors.items():
        if name.startswith("optimizer/"):
            _, index, key = name.split("/", 2)
            per_param.setdefault(int(index), {})[key] = tensor
    for index, values in saved.payload["optimizer"]["scalars"].items():
        per_param.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict(
        {"state": per_param, "param_groups": _from_json(saved.payload["optimizer"]["param_groups"])}
    )
    for group in optimizer.param_groups:  # buffers in the parameters' layout (channels_last)
        for param in group["params"]:
            for key, value in optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor) and value.shape == param.shape:
                    optimizer.state[param][key] = torch.empty_like(param).copy_(value)
    scheduler.load_state_dict(_from_json(saved.payload["scheduler"]))
    torch.set_rng_state(saved.tensors["rng/torch"])
    if device is not None and device.type == "cuda":
        index = torch.cuda.current_device() if device.index is None else device.index
        key = cuda_rng_key(saved.tensors, index)
        if key is not None:
            torch.cuda.set_rng_state(saved.tensors[key], index)
    numpy_rng = saved.payload["rng"]["numpy"]
    keys = saved.tensors["rng/numpy"].numpy().astype(np.uint32)
    np.random.set_state((numpy_rng[0], keys, *numpy_rng[1:]))
    version, internal, gauss = saved.payload["rng"]["python"]
    random.setstate((version, tuple(internal), gauss))


class StateWriter:
    """Writes snapshots in a background thread so the next epoch does not wait for the disk.

    One write in flight at a time; a failure (disk full) is raised on the next call."""

    def __init__(self, run: RunDir) -> None:
        self.run = run
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def _write(self, state: Snapshot) -> None:
        try:
            write_snapshot(self.run, state)
        except BaseException as exc:  # re-raised in the training thread
            self._error = exc

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def submit(self, state: Snapshot) -> None:
        self.wait()
        self._thread = threading.Thread(target=self._write, args=(state,), daemon=False)
        self._thread.start()
