"""Collectives that let a loss see the global batch, so that N processes train as one process with that batch.

The trainer (:func:`mmcl.engine.trainer.train_one_epoch`) weights each process's loss by its share of the global
batch, ``n_p * P / N``, and DDP averages the gradients over the ``P`` processes: the gradient is then that of
``sum_p n_p / N * loss_p``, the global batch's mean for a loss that is a per-sample mean. A loss that is not, a
contrastive loss whose negatives are the other samples or a weighted mean whose denominator sums over the batch, needs
the other processes' samples:

- :func:`all_reduce_with_grad`: a sum over the processes whose backward sums the gradients as well (what a loss over
  every process's samples needs: sync BatchNorm's statistics);
- :func:`gather_with_grad`: every process's rows, concatenated in rank order, gradients flowing back to the process
  that owns each row (what a contrastive loss's negatives need);
- :func:`global_mean_share`: this process's term of a global weighted mean, in the trainer's convention;
- :func:`all_gather`: every process's rows without gradients (MoCo's queue);
- :func:`global_sum`: a count or sum over every process.

Batches may differ in size between processes (an uneven last batch). In a single process each is the identity.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["world_size", "all_reduce_with_grad", "all_gather", "gather_with_grad", "global_sum", "global_mean_share"]


def world_size() -> int:
    """Number of processes of the distributed run (1 without one)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _sizes(n: int, device: torch.device) -> list[int]:
    sizes = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(world_size())]
    dist.all_gather(sizes, torch.tensor([n], dtype=torch.long, device=device))
    return [int(s) for s in sizes]


def _padded(x: Tensor, length: int) -> Tensor:
    return torch.cat([x, x.new_zeros((length - x.shape[0], *x.shape[1:]))]) if x.shape[0] < length else x


class _AllReduce(torch.autograd.Function):
    """Sum over the processes; the gradient of each process's input is the sum of every process's output
    gradient."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def all_reduce_with_grad(x: Tensor) -> Tensor:
    """``x`` summed over every process; backward sums the gradients over every process too (each process's loss
    depends on every process's ``x``). Every process must call it."""
    return _AllReduce.apply(x)


def _gather(x: Tensor, differentiable: bool) -> tuple[Tensor, int]:
    if world_size() == 1:
        return x, 0
    sizes = _sizes(x.shape[0], x.device)
    rank = dist.get_rank()
    if differentiable:  # each process's rows in its own slot of zeros, summed: the gradient flows back to the owner
        slots = x.new_zeros((len(sizes), max(sizes), *x.shape[1:]))
        slots[rank, :x.shape[0]] = x
        stacked = all_reduce_with_grad(slots)
    else:
        padded = _padded(x, max(sizes)).contiguous()
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        stacked = torch.stack(parts)
    return torch.cat([stacked[r, :n] for r, n in enumerate(sizes)]), sum(sizes[:rank])


def gather_with_grad(x: Tensor) -> tuple[Tensor, int]:
    """``(rows of every process concatenated in rank order, where this process's rows start)``; backward sends each
    process the gradient, summed over all processes' losses, of its own rows. Every process must call it."""
    return _gather(x, differentiable=True)


@torch.no_grad()
def all_gather(x: Tensor) -> Tensor:
    """The rows of every process, concatenated in rank order, without gradients. Every process must call it."""
    return _gather(x, differentiable=False)[0]


@torch.no_grad()
def global_sum(x: Tensor) -> Tensor:
    """``x`` summed over every process (a copy; ``x`` itself in a single process). Every process must call it."""
    return x if world_size() == 1 else all_reduce_with_grad(x)


def global_mean_share(total: Tensor, weight: Tensor | float, batch: int) -> Tensor:
    """This process's term of the global weighted mean ``sum_p total_p / sum_p weight_p``, where ``total`` is this
    process's (differentiable) sum and ``weight`` its (constant) sum of weights over a batch of ``batch`` samples.

    The trainer weights the term by ``batch * P / N`` and DDP averages over the ``P`` processes, so the term is
    ``total / sum_p weight_p * N / batch`` (``N``: the global batch); the gradients then add up to the global mean's,
    and the batch-weighted average of the terms the trainer reports is its value. One process: ``total / weight``.
    Every process must call it.
    """
    weight = torch.as_tensor(weight, dtype=torch.float64, device=total.device).detach().reshape(())
    if world_size() == 1:
        return total / weight.to(total.dtype)
    sums = global_sum(torch.stack([weight, torch.tensor(float(batch), dtype=torch.float64, device=total.device)]))
    return total * (sums[1] / (sums[0] * batch)).to(total.dtype)
