"""Multi-process training (torchrun): one code path for 1 or N processes.

Every rank holds the same model, draws the same random numbers and walks the same global
batch order; it computes its shard of each global batch, and gradients are averaged with
one all-reduce. Batch-norm statistics are summed over ranks, so N processes compute what
one process computes on the whole batch. Rank 0 alone writes logs, images and checkpoints.
"""

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..errors import DTISpritesError
from ..model.batch_norm import across_ranks, global_batch_norm
from ..model.heads import HeadBank


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> tuple[DistContext, str]:
    """Join the process group torchrun describes in the environment (if any).

    Returns the context and the device this rank trains on (cuda:<local rank> on GPUs).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext(), device_name
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if use_cuda:
        if not torch.cuda.is_available():
            raise DTISpritesError("--device cuda under torchrun, but no CUDA device is available")
        torch.cuda.set_device(local_rank)
        device_name = f"cuda:{local_rank}"
    else:
        device_name = "cpu"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=datetime.timedelta(minutes=30))
    return DistContext(rank, world_size, local_rank), device_name


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_gradients(parameters, world_size: int) -> None:
    """Average the gradients of every parameter that has one, in one flat all-reduce."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    if ctx.enabled:
        dist.all_reduce(tensor)
    return tensor


def broadcast_object(obj, ctx: DistContext):
    """Rank 0's value of a picklable object on every rank."""
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_module(module: nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if ctx.enabled:
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics cover the global batch of all ranks."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and across_ranks()):
            return super().forward(x)
        return global_batch_norm(
            x,
            self.running_mean if self.track_running_stats else None,
            self.running_var if self.track_running_stats else None,
            self.weight,
            self.bias,
            self.momentum,
            self.eps,
            self.num_batches_tracked if self.track_running_stats else None,
        )


def use_global_batchnorm(module: nn.Module) -> nn.Module:
    """Swap every BatchNorm2d of module for a GlobalBatchNorm2d with the same state, and
    switch the heads' batch norm to global statistics."""
    for head in module.modules():
        if isinstance(head, HeadBank):
            head.global_stats = True
    return _swap_batchnorm(module)


def _swap_batchnorm(module: nn.Module) -> nn.Module:
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, GlobalBatchNorm2d):
            replacement = GlobalBatchNorm2d(
                child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
            )
            replacement.load_state_dict(child.state_dict())
            replacement.to(child.weight.device if child.affine else child.running_mean.device)
            setattr(module, name, replacement)
        else:
            _swap_batchnorm(child)
    return module
