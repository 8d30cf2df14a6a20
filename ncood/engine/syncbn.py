"""BatchNorm over the global batch under torchrun, on any device and any backend.

With plain DDP each process normalises with the statistics of its own shard, so 4 GPUs at a
global batch of 128 train with BatchNorm over 32 images: not the TP's recipe. PyTorch's
SyncBatchNorm fixes that on GPUs only; :class:`GlobalBatchNorm2d` does the same with two
all-reduces in the forward pass and one in the backward pass, so CPU runs (gloo) — and the
test that compares 2 processes with 1 — train exactly the single-process model, up to
floating-point summation order. On CUDA, ncood uses PyTorch's fused SyncBatchNorm instead.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

_DIMS = (0, 2, 3)


def _all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    dist.all_reduce(tensor)
    return tensor


class _GlobalBatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        x = x.to(torch.promote_types(x.dtype, torch.float32))  # bf16 → fp32, fp64 stays
        channels = x.shape[1]
        local = torch.cat([x.sum(_DIMS), x.new_tensor([x.numel() // channels])])
        totals = _all_reduce(local)
        count = totals[-1].clone()
        mean = totals[:channels] / count
        centred = x - mean.view(1, -1, 1, 1)
        var = _all_reduce(centred.square().sum(_DIMS)) / count
        invstd = torch.rsqrt(var + eps)
        xhat = centred * invstd.view(1, -1, 1, 1)
        ctx.save_for_backward(xhat, invstd, weight, count)
        out = xhat * weight.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)
        ctx.mark_non_differentiable(mean, var, count)
        return out, mean, var, count

    @staticmethod
    def backward(ctx, grad_out, _mean, _var, _count):
        xhat, invstd, weight, count = ctx.saved_tensors
        grad_out = grad_out.to(xhat.dtype)
        grad_xhat = grad_out * weight.view(1, -1, 1, 1)
        channels = xhat.shape[1]
        sums = _all_reduce(torch.cat([grad_xhat.sum(_DIMS), (grad_xhat * xhat).sum(_DIMS)]))
        mean_grad = (sums[:channels] / count).view(1, -1, 1, 1)
        mean_grad_xhat = (sums[channels:] / count).view(1, -1, 1, 1)
        grad_x = invstd.view(1, -1, 1, 1) * (grad_xhat - mean_grad - xhat * mean_grad_xhat)
        grad_weight = (grad_out * xhat).sum(_DIMS)
        grad_bias = grad_out.sum(_DIMS)
        return grad_x, grad_weight, grad_bias, None


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics cover every process's shard (same state_dict)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        synced = self.training and dist.is_available() and dist.is_initialized()
        if not synced or dist.get_world_size() == 1 or not self.affine:
            return super().forward(x)
        out, mean, var, count = _GlobalBatchNorm.apply(x, self.weight, self.bias, self.eps)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = (
                    1.0 / float(self.num_batches_tracked)
                    if self.momentum is None
                    else self.momentum
                )
                unbiased = var * count / (count - 1).clamp_min(1)
                self.running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
                self.running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)
        return out.to(x.dtype)


def convert_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm2d → a global-batch BatchNorm (PyTorch's SyncBatchNorm on CUDA)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            replacement = GlobalBatchNorm2d(
                child.num_features, child.eps, child.momentum, child.affine
            )
            replacement.load_state_dict(child.state_dict())
            setattr(module, name, replacement.to(child.weight.device))
        else:
            convert_batchnorm(child, device)
    return module
