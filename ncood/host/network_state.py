"""The network as it was loaded, so that every model-based scorer gets it so.

Model-based scorers share one network (a load per scorer would cost a rebuild each). One that
leaves it changed — weights or buffers edited, a module left in train mode, ``requires_grad``
switched, a hook left registered, another dtype or device, autograd switched off — would change
every scorer after it without a word. :class:`Pristine` is taken once, when the network is
built (one copy of its tensors, on the CPU: GPU memory is the scarce one); after each scorer
:meth:`Pristine.changes` says what it left changed and :meth:`Pristine.restore` puts it back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# A module's hook tables (pytorch keeps the kwargs/always-called flags in side tables by id).
HOOK_TABLES = ("_forward_pre_hooks", "_forward_hooks", "_backward_pre_hooks", "_backward_hooks")
HOOK_SIDE_TABLES = (
    "_forward_pre_hooks_with_kwargs",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
)
SHOWN = 3  # names listed per kind of change


@dataclass
class Pristine:
    tensors: dict[str, torch.Tensor]  # parameter or buffer → a CPU copy of its value
    devices: dict[str, torch.device]  # … → where it lived
    trainable: dict[str, bool]  # parameter → requires_grad
    modules: dict[str, tuple[type, bool, dict[str, tuple]]]  # type, training, hook ids
    grad_enabled: bool

    @classmethod
    def of(cls, module: torch.nn.Module) -> Pristine:
        import torch

        named = _tensors(module)
        return cls(
            tensors={n: t.detach().to("cpu", copy=True) for n, t in named.items()},
            devices={n: t.device for n, t in named.items()},
            trainable={n: p.requires_grad for n, p in module.named_parameters()},
            modules={n: _module_state(m) for n, m in module.named_modules()},
            grad_enabled=torch.is_grad_enabled(),
        )

    def changes(self, module: torch.nn.Module) -> str:
        """What differs from the loaded network, in one line ("" when nothing does)."""
        import torch

        named = _tensors(module)
        found: dict[str, list[str]] = {}

        def note(kind: str, name: str) -> None:
            found.setdefault(kind, []).append(name or "the root module")

        for name in sorted(set(named) ^ set(self.tensors)):
            note("tensors added or removed", name)
        for name in sorted(set(named) & set(self.tensors)):
            now, then = named[name], self.tensors[name]
            if now.dtype != then.dtype or now.device != self.devices[name]:
                note("dtype or device", name)
            elif now.shape != then.shape or not _same_bits(now, then):
                note("values", name)
        for name, parameter in module.named_parameters():
            if self.trainable.get(name, parameter.requires_grad) != parameter.requires_grad:
                note("requires_grad", name)
        modules = dict(module.named_modules())
        for name in sorted(set(modules) ^ set(self.modules)):
            note("modules added or removed", name)
        for name in sorted(set(modules) & set(self.modules)):
            kind, training, hooks = self.modules[name]
            now_kind, now_training, now_hooks = _module_state(modules[name])
            if now_kind is not kind:
                note("modules replaced", name)
            if now_training != training:
                note("train mode", name)
            if now_hooks != hooks:
                note("hooks left registered", name)
        if torch.is_grad_enabled() != self.grad_enabled:
            note("autograd", "switched " + ("on" if torch.is_grad_enabled() else "off"))
        return "; ".join(
            f"{kind}: {', '.join(names[:SHOWN])}"
            + (f" (+{len(names) - SHOWN})" * (len(names) > SHOWN))
            for kind, names in found.items()
        )

    def restore(self, module: torch.nn.Module) -> bool:
        """Put ``module`` back as it was taken; False where it cannot be done in place (a module
        or tensor added, removed or replaced by another type: the caller rebuilds it)."""
        import torch

        named = _tensors(module)
        modules = dict(module.named_modules())
        if set(named) != set(self.tensors) or set(modules) != set(self.modules):
            return False
        if any(type(modules[n]) is not kind for n, (kind, _, _) in self.modules.items()):
            return False
        with torch.no_grad():
            for name, value in named.items():
                saved, device = self.tensors[name], self.devices[name]
                if (
                    value.dtype == saved.dtype
                    and value.device == device
                    and value.shape == saved.shape
                ):
                    value.copy_(saved)
                    continue
                owner, _, leaf = name.rpartition(".")
                holder = modules[owner]
                if leaf in holder._parameters:
                    holder._parameters[leaf].data = saved.to(device, copy=True)
                else:
                    holder._buffers[leaf] = saved.to(device, copy=True)
        for name, parameter in module.named_parameters():
            parameter.requires_grad_(self.trainable[name])
        for name, (_, training, hooks) in self.modules.items():
            modules[name].training = training
            for table in HOOK_TABLES:
                registered = getattr(modules[name], table, None)
                for key in [k for k in registered or {} if k not in hooks[table]]:
                    del registered[key]
                    for side in HOOK_SIDE_TABLES:
                        getattr(modules[name], side, {}).pop(key, None)
        torch.set_grad_enabled(self.grad_enabled)
        return True


def _tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers (non-persistent ones too) by dotted name."""
    return {**dict(module.named_parameters()), **dict(module.named_buffers())}


def _module_state(module: torch.nn.Module) -> tuple[type, bool, dict[str, tuple]]:
    hooks = {table: tuple(getattr(module, table, None) or ()) for table in HOOK_TABLES}
    return type(module), module.training, hooks


def _same_bits(now: torch.Tensor, then: torch.Tensor) -> bool:
    """Equal bit for bit (a NaN in the loaded weights equals itself)."""
    import torch

    def bits(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8)

    return torch.equal(bits(now), bits(then))
