"""Will a config fit in memory? Checked before anything large is allocated.

A run whose sprites or batch are too large used to fail deep inside the first step with a
request for a hundred gigabytes, after the run folder was made. The estimate counts:

- the model's parameters with their gradients and Adam's two moments (float32), from a
  copy of the model built on the `meta` device (shapes only, no memory);
- the rendering of every candidate sprite in every layer for one batch, the selection's
  working set: L * K' * B * (C+2) * H * W floats, times RENDER_COPIES for the transformed
  copies and blends the selection holds at once (the learned selection draws 2 sprite images
  per layer instead of K').

It leaves out the encoder's activations, the images and allocator slack, so it is a floor:
a config it refuses would not have run.
"""

from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ConfigError
from ..model.sprites_model import DTISprites

BYTES_PER_FLOAT = 4
PARAMETER_COPIES = 4  # weight, gradient, Adam's exp_avg and exp_avg_sq
# Candidate-sized tensors alive at the peak of a training step: with `bench` on a CPU
# (tetro_demo.yml, K = 19, 100, 200, 400) peak RSS grew by 2.1 to 2.4 renderings per extra sprite.
RENDER_COPIES = 2
GIB = 2**30


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a training step needs, by cause."""

    parameters: int
    rendering: int

    @property
    def total(self) -> int:
        return self.parameters + self.rendering


def meta_model(model_cfg: dict, img_size: tuple[int, int], n_channels: int) -> DTISprites:
    """The model with every tensor on the `meta` device: true shapes, no storage."""
    shapes_only = {**model_cfg, "proto_init": "constant", "mask_init": "constant", "bkg_init": "constant"}
    with torch.device("meta"):
        return DTISprites(shapes_only, img_size, n_channels)


def estimate_training_memory(
    model_cfg: dict, img_size: tuple[int, int], n_channels: int, batch_size: int
) -> MemoryEstimate:
    model = meta_model(model_cfg, img_size, n_channels)
    n_params = sum(p.numel() for p in model.parameters())
    H, W = img_size
    candidates = model.L * model.sprite_renders_per_layer * batch_size * (n_channels + 2) * H * W  # one rendering
    return MemoryEstimate(n_params * PARAMETER_COPIES * BYTES_PER_FLOAT, candidates * RENDER_COPIES * BYTES_PER_FLOAT)


def free_memory(device: torch.device) -> int | None:
    """Bytes a new allocation can get on `device` (MemAvailable for the CPU); None if unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type != "cpu":
        return None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_training_memory(cfg: dict, img_size: tuple[int, int], n_channels: int, device: torch.device) -> None:
    """Refuse, naming the keys to lower, a config whose estimate exceeds the free memory."""
    free = free_memory(device)
    if free is None:
        return
    model_cfg, batch_size = cfg["model"], cfg["training"]["batch_size"]
    need = estimate_training_memory(model_cfg, img_size, n_channels, batch_size)
    if need.total <= free:
        return
    where = "GPU memory" if device.type == "cuda" else "RAM"
    raise ConfigError(
        f"model.n_sprites={model_cfg['n_sprites']} with training.batch_size={batch_size} needs about "
        f"{need.total / GIB:.1f} GiB ({need.parameters / GIB:.1f} for parameters, gradients and Adam's state, "
        f"{need.rendering / GIB:.1f} to render every candidate sprite of one batch) but {free / GIB:.1f} GiB of "
        f"{where} is free; lower model.n_sprites or training.batch_size"
    )
