"""Batch normalisation over the global batch of every torchrun process.

Each rank sees a shard of the batch; summing the per-channel sums, sums of squares and
counts over ranks (one all-reduce, differentiable) gives the statistics one process would
compute on the whole batch. Works with gloo on CPUs as well as NCCL, unlike torch's
SyncBatchNorm, and serves both the encoder's BatchNorm2d and the heads' batched norm.
"""

import torch
import torch.distributed as dist


def across_ranks() -> bool:
    """True under torchrun with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def global_batch_norm(
    x: torch.Tensor,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    momentum: float | None = 0.1,
    eps: float = 1e-5,
    num_batches_tracked: torch.Tensor | None = None,
) -> torch.Tensor:
    """Training-mode batch norm of x (N, C, *) with statistics over all ranks' N and *.

    Running statistics, when given, are updated in place as F.batch_norm does (unbiased
    variance; momentum None means a cumulative average over num_batches_tracked).
    """
    from torch.distributed.nn.functional import all_reduce

    C = x.shape[1]
    dims = [0, *range(2, x.dim())]
    count = x.new_tensor([x.numel() // C])
    stats = all_reduce(torch.cat([x.sum(dims), x.square().sum(dims), count]))  # (2C + 1,)
    n = stats[-1]
    mean = stats[:C] / n
    var = (stats[C : 2 * C] / n - mean.square()).clamp(min=0)
    if running_mean is not None:
        with torch.no_grad():
            if num_batches_tracked is not None:
                num_batches_tracked += 1
            rate = momentum if momentum is not None else 1 / float(num_batches_tracked)
            running_mean.mul_(1 - rate).add_(rate * mean)
            running_var.mul_(1 - rate).add_(rate * var * n / (n - 1).clamp(min=1))
    shape = [1, C] + [1] * (x.dim() - 2)
    out = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + eps)
    if weight is not None:
        out = out * weight.view(shape) + bias.view(shape)
    return out
