"""Images a person looks at during and after training (docs/method.md §2.4).

At each validation: sprites, masks, masked sprites, backgrounds, the transformed sprites of
4 fixed training images and their reconstructions, as PNG grids under `images/`, with one
frame per validation kept under `images/evolution/` for the final animated GIFs.

The PNGs are enlarged (nearest neighbour, so pixels stay sharp) until each tile is at least
MIN_TILE_PX wide: a 24-pixel sprite is otherwise a speck in a file viewer. Frames and GIFs
keep the native size, as a long run gathers hundreds of frames; the report enlarges them.
"""

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.utils import save_image

GIF_FRAME_MS = 200
MIN_TILE_PX = 64


def enlarge(tensor: torch.Tensor, min_tile: int = MIN_TILE_PX) -> torch.Tensor:
    """(N, C, h, w) -> (N, C, f*h, f*w) with the smallest integer f making each tile >= min_tile."""
    factor = max(1, math.ceil(min_tile / max(tensor.shape[-2:])))
    return F.interpolate(tensor.float(), scale_factor=factor, mode="nearest") if factor > 1 else tensor


def _save(tensor: torch.Tensor, folder: Path, name: str, step: int, nrow: int) -> None:
    save_image(enlarge(tensor), folder / f"{name}.png", nrow=nrow, padding=2, pad_value=1)
    evolution = folder / "evolution"
    evolution.mkdir(exist_ok=True)
    save_image(tensor, evolution / f"{name}_{step:08d}.png", nrow=nrow, padding=2, pad_value=1)


@torch.no_grad()
def snapshot_grids(model, images: torch.Tensor) -> dict[str, tuple[torch.Tensor, int]]:
    """name -> (batch on the CPU, images per row) for the fixed examples images (n, C, H, W)."""
    was_training = model.training
    model.eval()
    protos = model.clamp(model.prototypes).cpu()  # (K, C, h, w)
    masks = model.clamp(model.masks).cpu()  # (K, 1, h, w)
    nrow = min(model.K, 10)
    grids = {"sprites": (protos, nrow), "masks": (masks, nrow), "masked_sprites": (protos * masks, nrow)}
    if model.M:
        grids["backgrounds"] = (model.clamp(model.backgrounds).cpu(), model.M)
    out = model(images)
    colors, cand_masks = model.render_candidates(out.betas, images.shape[0])  # (L, K', n, C, H, W)
    transformed = (colors * cand_masks).permute(2, 0, 1, 3, 4, 5).flatten(0, 2)  # (n*L*K', C, H, W)
    # One row per (image, layer), one column per sprite: a row of L*K' tiles was unreadable.
    grids["transformed_sprites"] = (transformed.clamp(0, 1).cpu(), model.n_candidates)
    recon = torch.stack([images, out.recon.clamp(0, 1)], 1).flatten(0, 1)  # (2n, C, H, W)
    grids["reconstructions"] = (recon.cpu(), 2)
    model.train(was_training)
    return grids


def save_snapshots(model, images: torch.Tensor, folder: Path, step: int) -> dict[str, tuple[torch.Tensor, int]]:
    """Write the grids as PNG (latest and one frame per call for the GIFs); return them."""
    folder.mkdir(parents=True, exist_ok=True)
    grids = snapshot_grids(model, images)
    for name, (tensor, nrow) in grids.items():
        _save(tensor, folder, name, step, nrow)
    return grids


def make_gifs(folder: Path) -> list[Path]:
    """One animated GIF per snapshot kind from the frames under `evolution/`."""
    evolution = folder / "evolution"
    made = []
    if not evolution.is_dir():
        return made
    names = sorted({p.name.rsplit("_", 1)[0] for p in evolution.glob("*.png")})
    for name in names:
        frames = [Image.open(p).convert("RGB") for p in sorted(evolution.glob(f"{name}_*.png"))]
        if frames:
            target = folder / f"{name}.gif"
            frames[0].save(target, save_all=True, append_images=frames[1:], duration=GIF_FRAME_MS, loop=0)
            made.append(target)
    return made
