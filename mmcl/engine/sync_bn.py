"""Batch normalisation over the global batch when a run trains on several processes.

With ``P`` processes each holding ``B`` samples, plain BatchNorm normalises each process's ``B`` samples by their own
mean and variance, where one process with the global batch of ``P * B`` would use the statistics of all of them: the
two runs train differently. :func:`sync_batchnorm` replaces every BatchNorm by one that reduces its statistics over
the processes, so a step on ``P`` processes computes what one step on one process computes, up to float rounding.

On CUDA this is ``torch.nn.SyncBatchNorm``. torch's refuses CPU tensors, so on a CPU (gloo) it is
:class:`CPUSyncBatchNorm`: the per-channel sums are summed over the processes by a differentiable all-reduce
(:func:`mmcl.distributed.all_reduce_with_grad`), whose backward all-reduces the gradients as well, so every process's gradient includes what
its samples did to the other processes' normalisation (as torch's CUDA kernel does). Evaluation uses the running
statistics, unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmcl.distributed import all_reduce_with_grad, world_size


class CPUSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics (mean, biased variance; the unbiased one for the running variance) are
    those of the samples of every process, computed in float32. Same parameters and buffers as ``nn.BatchNorm*d``,
    so its state dict loads into one."""

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input (N, C, ...), got {input.dim()}-D")

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        if not (self.training and world_size() > 1):
            return super().forward(input)
        x = input.float()
        dims = [d for d in range(x.dim()) if d != 1]
        count = all_reduce_with_grad(torch.tensor([x.numel() / x.shape[1]], dtype=torch.float32))
        mean = all_reduce_with_grad(x.sum(dims)) / count
        shape = [1, -1] + [1] * (x.dim() - 2)
        centred = x - mean.reshape(shape)
        var = all_reduce_with_grad(centred.square().sum(dims)) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = var * (count / (count - 1).clamp(min=1))
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        out = centred * torch.rsqrt(var + self.eps).reshape(shape)
        if self.affine:
            out = out * self.weight.reshape(shape) + self.bias.reshape(shape)
        return out.to(input.dtype)


def sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` with every BatchNorm layer normalising over the processes' global batch (parameters, buffers and
    training mode kept): ``torch.nn.SyncBatchNorm`` on CUDA, :class:`CPUSyncBatchNorm` elsewhere."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert(module)


def _convert(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, CPUSyncBatchNorm):
        new = CPUSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                               module.track_running_stats)
        if module.affine:
            with torch.no_grad():
                new.weight = module.weight
                new.bias = module.bias
        if module.track_running_stats:
            new.running_mean = module.running_mean
            new.running_var = module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module.add_module(name, _convert(child))
    return module

