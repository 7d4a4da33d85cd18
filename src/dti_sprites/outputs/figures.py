"""Figures of a trained model (docs/method.md §3, qualitative outputs), written at the end of training.

For the first 32 images of the eval split, into the run's `images/`:
- `segmentation_instances.png`: input | reconstruction | instance segmentation (one colour
  per object layer, black for the background), four triplets per row;
- `segmentation_semantic.png`: the same with one colour per sprite;
- `reconstructions_32.png`: input | reconstruction pairs;
- `layers_32.png`: input | reconstruction | each object layer over light grey (the
  per-object crops of the instance segmentation), two images per row.

Also the larger, labelled pictures used in the README (`sprite_sheet`, `decomposition_strip`).
"""

import logging
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torchvision.utils import save_image

from ..palette import colorize
from ..training.snapshots import enlarge  # small images: nearest-neighbour to tiles of 64 px or more
from .decompose import ImageDecomposition, explain, to_pil

N_FIGURE_IMAGES = 32
TRIPLETS_PER_ROW = 4
LAYER_BACKDROP = 0.8  # grey behind each object layer in layers_32.png

log = logging.getLogger(__name__)


def _rgb(x: torch.Tensor) -> torch.Tensor:
    """(B, 1 or 3, H, W) -> (B, 3, H, W) on the CPU, clamped."""
    x = x.detach().float().cpu().clamp(0, 1)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def _interleave(columns: list[torch.Tensor]) -> torch.Tensor:
    """[(B, 3, H, W)] * n -> (B*n, 3, H, W) with the n views of each image side by side."""
    return torch.stack(columns, 1).flatten(0, 1)


def _first_images(dataset, n: int) -> torch.Tensor:
    """The first n images of a dataset whose samples are an image or a tuple starting with one."""
    images = []
    for i in range(min(n, len(dataset))):
        sample = dataset[i]
        images.append(sample[0] if isinstance(sample, (tuple, list)) else sample)
    return torch.stack(images)


@torch.no_grad()
def write_final_figures(
    model,
    dataset,
    folder: Path,
    device,
    fill_background: bool = False,
    n_images: int = N_FIGURE_IMAGES,
    batch_size: int = 32,
) -> dict[str, Path]:
    """Segmentations, reconstructions and layers of the first n images of `dataset`.

    fill_background follows the evaluation (`eval_with_bkg: false`), so that the pictures
    show the segmentation that was scored. Returns name -> file written.
    """
    start = time.perf_counter()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images = _first_images(dataset, n_images)  # (N, C, H, W)
    was_training = model.training
    model.eval()
    parts = {"recon": [], "inst": [], "sem": [], "layers": []}
    try:
        for start_i in range(0, images.shape[0], batch_size):
            batch = images[start_i : start_i + batch_size].to(device)
            out, inst, sem = explain(model, batch, fill_background)
            # (L, B, C, H, W) each layer over light grey: distinct from the white grid lines
            layers = out.object_colors * out.object_masks + LAYER_BACKDROP * (1 - out.object_masks)
            parts["recon"].append(out.recon.cpu())
            parts["inst"].append(inst.cpu())
            parts["sem"].append(sem.cpu())
            parts["layers"].append(layers.cpu())
    finally:
        model.train(was_training)
    inputs = _rgb(images)
    recon = _rgb(torch.cat(parts["recon"]))
    inst, sem = torch.cat(parts["inst"]), torch.cat(parts["sem"])
    layers = torch.cat(parts["layers"], 1)  # (L, N, C, H, W)
    n_objects = layers.shape[0]
    views = {
        "segmentation_instances": ([inputs, recon, colorize(inst, n_objects + 1)], 3 * TRIPLETS_PER_ROW),
        "segmentation_semantic": ([inputs, recon, colorize(sem, model.n_candidates + 1)], 3 * TRIPLETS_PER_ROW),
        "reconstructions_32": ([inputs, recon], 2 * TRIPLETS_PER_ROW),
        "layers_32": ([inputs, recon, *[_rgb(layer) for layer in layers]], 2 * (2 + n_objects)),
    }
    written = {}
    for name, (columns, nrow) in views.items():
        path = folder / f"{name}.png"
        save_image(enlarge(_interleave(columns)), path, nrow=nrow, padding=2, pad_value=1)
        written[name] = path
    log.info(f"final figures of {images.shape[0]} images written to {folder} in {time.perf_counter() - start:.1f} s")
    return written


# ---- larger labelled pictures (README, reports) --------------------------------------------
def _checkerboard(h: int, w: int, square: int = 8, dark: bool = False) -> torch.Tensor:
    """A grey checkerboard (3, h, w): shows transparency behind RGBA content."""
    ys = torch.arange(h)[:, None] // square
    xs = torch.arange(w)[None, :] // square
    board = torch.where((ys + xs) % 2 == 0, *((0.22, 0.32) if dark else (0.92, 0.78)))
    return board.expand(3, h, w).clone()


def _over_checkerboard(color: torch.Tensor, mask: torch.Tensor, cell: int, dark: bool = False) -> Image.Image:
    """Colour (C, h, w) with alpha mask (1, h, w) upscaled to cell x cell over a checkerboard."""
    color = _rgb(color[None])[0]
    scale = cell / max(color.shape[-2:])
    size = (round(color.shape[-2] * scale), round(color.shape[-1] * scale))
    color = F.interpolate(color[None], size=size, mode="nearest")[0]
    mask = F.interpolate(mask[None].float().cpu().clamp(0, 1), size=size, mode="nearest")[0]
    out = color * mask + _checkerboard(*size, dark=dark) * (1 - mask)
    return to_pil(out)


def _sheet(
    cells: list[tuple[str, Image.Image]], per_row: int, cell: int, label_h: int = 16, pad: int = 6
) -> Image.Image:
    """Lay labelled cells out on white, `per_row` per row."""
    rows = math.ceil(len(cells) / per_row)
    sheet = Image.new("RGB", (pad + per_row * (cell + pad), pad + rows * (cell + label_h + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (label, img) in enumerate(cells):
        x = pad + (i % per_row) * (cell + pad)
        y = pad + (i // per_row) * (cell + label_h + pad)
        sheet.paste(img, (x + (cell - img.width) // 2, y + (cell - img.height) // 2))
        draw.text((x + 2, y + cell + 2), label, fill=(40, 40, 40))
    return sheet


@torch.no_grad()
def sprite_sheet(model, path: str | Path, cell: int = 96, per_row: int = 10) -> Path:
    """Every learned sprite (appearance with its mask as transparency, over a checkerboard,
    dark when the sprites are bright), then the backgrounds, labelled with their index."""
    protos = model.clamp(model.prototypes).cpu()  # (K, C, h, w)
    masks = model.clamp(model.masks).cpu()  # (K, 1, h, w)
    dark = bool((protos * masks).sum() / masks.sum().clamp(min=1e-6) / protos.shape[1] > 0.5)  # bright sprites
    cells = [(f"sprite {k}", _over_checkerboard(protos[k], masks[k], cell, dark)) for k in range(model.K)]
    if model.M:
        for m, bkg in enumerate(model.clamp(model.backgrounds).cpu()):
            cells.append((f"background {m}", _over_checkerboard(bkg, torch.ones_like(bkg[:1]), cell)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sheet(cells, min(per_row, len(cells)), cell).save(path)
    return path


def decomposition_strip(results: list[ImageDecomposition], path: str | Path, cell: int = 120) -> Path:
    """One row per image: input, reconstruction, background, each object layer (over a
    checkerboard), instance and semantic segmentations."""
    cells, per_row = [], None
    for result in results:
        row = [("input", result.image), ("reconstruction", result.recon)]
        if result.background is not None:
            row.append(("background", result.background))
        images = [(label, _over_checkerboard(x, torch.ones_like(x[:1]), cell)) for label, x in row]
        for layer in range(1, result.layer_colors.shape[0] + 1):
            sprite = result.objects["layers"][layer - 1]["sprite"]
            images.append(
                (
                    f"layer {layer} (sprite {sprite})",
                    _over_checkerboard(result.layer_colors[layer - 1], result.layer_masks[layer - 1], cell),
                )
            )
        n_layers = result.layer_colors.shape[0]
        n_labels = result.objects["n_sprites"] + 2
        for label, labels, n in (
            ("instances", result.instances, n_layers + 1),
            ("semantic", result.semantic, n_labels),
        ):
            coloured = colorize(labels[None], n)[0]
            images.append((label, _over_checkerboard(coloured, torch.ones_like(coloured[:1]), cell)))
        per_row = per_row or len(images)
        cells += images
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sheet(cells, per_row, cell).save(path)
    return path
