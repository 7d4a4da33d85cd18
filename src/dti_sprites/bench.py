"""Speed of one full training step (forward with selection, backward, Adam) on synthetic
data of a config's size: median ms per iteration, images per second, peak memory.

"late" is the state of most of a run (sprites unfrozen, every curriculum module on);
"early" is the first epoch (sprites frozen, curricula at their start).
Alongside the time: compute operators per step (each one at least a kernel launch on a GPU),
host synchronisations per step (should be 0), and on CUDA the kernels the profiler saw.
"""

import itertools
import resource
import statistics
import time

import torch

from .config import size_pair
from .data import DATASETS
from .errors import ConfigError
from .host_memory import keep_freed_memory
from .model.sprites_model import DTISprites, compile_model
from .op_census import OpCensus
from .training.optim import build_optimizer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_model(cfg: dict, phase: str = "late", seed: int = 0) -> tuple[DTISprites, tuple[int, int, int]]:
    """The config's model on the CPU, in training mode and in the phase's state, and the (C, H, W)
    of its images: what `benchmark` times, and what tests of a step's operators run."""
    entry = DATASETS.get(cfg["dataset"]["name"])
    if entry.native_shape is None:
        raise ConfigError(f"dataset.name: {entry.name!r} has no known image size to benchmark with")
    C, H, W = entry.native_shape
    if cfg["dataset"]["img_size"] is not None:
        H, W = size_pair(cfg["dataset"]["img_size"], (H, W))
    model = DTISprites(cfg["model"], (H, W), C, sample_images=lambda n: torch.rand(n, C, H, W), seed=seed)
    if phase == "late":
        model.advance_curricula(10**9)
    model.sprites_frozen = phase == "early" and cfg["model"]["freeze_sprite"] > 0
    model.train()
    return model, (C, H, W)


def benchmark(
    cfg: dict, device: torch.device, phase: str = "late", steps: int = 20, warmup: int = 3, seed: int = 0
) -> dict:
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as in training
    else:
        keeps_freed_memory = keep_freed_memory()  # as in training; before anything is allocated
    torch.manual_seed(seed)
    model, (C, H, W) = bench_model(cfg, phase, seed)
    model.to(device)
    model.encoder_bf16 = cfg["training"]["amp"]
    compile_model(model, cfg["training"]["compile"])
    optimizer = build_optimizer(model, cfg["training"]["optimizer"])
    B = cfg["training"]["batch_size"]
    data = torch.rand(4, B, C, H, W, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    batches = itertools.cycle(data)

    def step() -> None:
        out = model(next(batches))
        optimizer.zero_grad(set_to_none=True)
        out.objective().backward()
        optimizer.step()

    times = []
    for i in range(warmup + steps):
        _sync(device)
        start = time.perf_counter()
        step()
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    result = {
        "config_dataset": DATASETS.get(cfg["dataset"]["name"]).name,
        "device": str(device),
        "phase": phase,
        "batch_size": B,
        "amp": cfg["training"]["amp"],
        "compile": cfg["training"]["compile"],
        "steps": steps,
        "median_ms": median * 1000,
        "images_per_s": B / median,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        result["peak_gpu_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        result["gpu"] = torch.cuda.get_device_name(device)
        result["kernels_per_step"] = _count_kernels(step, device)
    else:
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result["keeps_freed_memory"] = keeps_freed_memory
    if not cfg["training"]["compile"]:  # a dispatch mode and compiled graphs do not mix
        with OpCensus() as census:
            step()
        result["ops_per_step"] = census.n_ops
        result["host_syncs_per_step"] = census.n_syncs
        if census.n_syncs:
            result["host_syncs"] = dict(census.syncs)
    return result


def _count_kernels(step, device: torch.device) -> int | None:
    """Device kernels (and copies) one step launches, from the profiler; None if it cannot tell."""
    from torch.profiler import ProfilerActivity, profile

    try:
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            step()
            _sync(device)
        return sum(1 for event in prof.events() if event.device_type == torch.autograd.DeviceType.CUDA)
    except (RuntimeError, AttributeError):
        return None
