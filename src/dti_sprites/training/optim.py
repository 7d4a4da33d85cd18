"""Optimiser and learning-rate schedule (SPEC §2.1).

Two parameter groups: `cluster` (appearances, masks, backgrounds) and `transformer`
(encoder and every head), each with its own overrides. Schedules are per epoch and, for a
list `gamma`, per group (`[1, 0.1]` decays only the transformer group).
"""

import math

import torch

GROUPS = ("cluster", "transformer")


def build_optimizer(model, opt_cfg: dict) -> torch.optim.Adam:
    """Adam over the two groups, as one fused kernel per step (CPU and CUDA alike).

    The foreach fallback (a torch without CPU fused Adam) reads every step counter back to
    the host; the fused kernel reads nothing and, on 2 CPU cores, runs 3x faster.
    """
    groups = []
    for name, params in (("cluster", model.cluster_parameters()), ("transformer", model.transformer_parameters())):
        group = {"params": params, "name": name, "lr": opt_cfg["lr"], "weight_decay": opt_cfg["weight_decay"],
                 "betas": tuple(opt_cfg["betas"])}
        group.update({k: (tuple(v) if k == "betas" else v) for k, v in opt_cfg[name].items()})
        groups.append(group)
    try:
        return torch.optim.Adam(groups, fused=True)
    except RuntimeError:
        return torch.optim.Adam(groups, foreach=True)


def _factor(sched: dict, gamma: float, epoch: int, n_epochs: int) -> float:
    name = sched["name"]
    if name == "multi_step":
        return gamma ** sum(epoch >= m for m in sched["milestones"])
    if name == "exp_lr":
        return gamma ** epoch
    if name == "cosine_annealing":
        span = max(n_epochs - sched["warmup"], 1)
        t = min(max(epoch - sched["warmup"], 0), span)
        return sched["eta_min"] + (1 - sched["eta_min"]) * 0.5 * (1 + math.cos(math.pi * t / span))
    if name == "poly_lr":
        return max(1 - epoch / max(n_epochs, 1), 0.0) ** sched["power"]
    return 1.0  # constant_lr


def build_scheduler(optimizer: torch.optim.Optimizer, sched: dict, n_epochs: int):
    """A LambdaLR stepped once per epoch, with an optional linear warm-up."""
    gammas = sched["gamma"] if isinstance(sched["gamma"], list) else [sched["gamma"]] * len(optimizer.param_groups)

    def make(gamma):
        def factor(epoch):
            warm = min(1.0, (epoch + 1) / sched["warmup"]) if sched["warmup"] else 1.0
            return warm * _factor(sched, gamma, epoch, n_epochs)
        return factor

    return torch.optim.lr_scheduler.LambdaLR(optimizer, [make(g) for g in gammas])
