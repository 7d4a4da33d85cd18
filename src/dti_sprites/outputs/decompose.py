"""Decompose new images with a trained run: layers, segmentations and where each object is.

From Python:

    run = load_run("runs/tetrominoes/1126_default")
    results = run.decompose(["a.png", "b.png"])  # or a tensor (B, C, H, W) in [0, 1]
    results[0].objects["layers"][0]["placement"]["center_px"]
    results[0].save("out/a")

From the shell: `python -m dti_sprites decompose --run RUN --images DIR --out OUT`, which
writes OUT/<stem>/ for every image DIR/<stem>.<ext> (see `ImageDecomposition.save`).

Images are resized to the model's image size first (bilinear, antialiased, as the
training loader does), optionally centre-cropped to its aspect ratio before (see
decompose_inputs.py). The placement of each object is read from the head outputs the
forward pass returns (`Decomposition.betas`), each module describing its own (`describe`
and `sampling_matrix`, model/transforms.py); `CONVENTIONS` below, with the modules' own
conventions, is copied into every objects.json so the numbers can be read without this file.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ..errors import DataError
from ..evaluation.multi_object import front_layer, semantic_labels
from ..model.canvas_geometry import input_landing, rounded
from ..model.transforms import describe_conventions
from ..palette import colorize
from ..training.checkpoint import load_trained_model
from .decompose_inputs import fit_to_model, list_image_files, load_image

MASK_THRESHOLD = 0.5  # the evaluation's hard-mask threshold (docs/method.md §3)

CONVENTIONS = {
    "pixels": "x to the right, y down, origin at the top-left corner of the image; pixel (row i, column j) "
    "covers [j, j+1) x [i, i+1), so the top-left pixel's centre is (0.5, 0.5); sizes are [height, width]",
    "resizing": "every input is resized (bilinear, antialiased) to the model's image size before decomposition, "
    "after a crop to the model's aspect ratio around the image centre when crop is 'center' (otherwise "
    "an image of another aspect ratio is stretched); all pixel values refer to that size (model_size), "
    "not to original_size",
    "layers": "object layers are numbered 1..L; layer_<l>.png is its colour with its mask as alpha",
    "instances": "instances.png: for each pixel the front-most object layer whose mask exceeds 0.5, 0 where none "
    "(the background)",
    "semantic": "semantic.png: sprite index + 1 of that layer, 0 for the background",
    "previews": "instances_color.png and semantic_color.png: the same labels coloured for viewing (label 0 black, "
    "each label one colour, as in the run's report)",
    "sprite": "index of the learned sprite the layer shows (0..n_sprites-1); index n_sprites is the empty sprite "
    "of models trained with add_empty_sprite",
    "empty": "true when the layer shows the empty sprite or its mask exceeds 0.5 nowhere",
    "occlusion_rank": "0 = front-most object layer; layers are ranked by how much of the other object layers is "
    "predicted in front of them",
    "transformations": "the modules that acted, in the order applied: stage 'sprite' (the sprite's own sequence; "
    "its output canvas is the sprite size when a layer sequence follows, else the image), then "
    "stage 'layer' (output: the image), stage 'background' for the background; 'beta' is the "
    "raw head output",
    **describe_conventions(),
    "placement": "all spatial modules of the layer combined: center_px = where the sprite's centre lands in the "
    "image; scale = image pixels per sprite pixel (geometric mean; scale_xy per sprite axis); "
    "rotation_deg = angle of the sprite's x axis in the image, positive = clockwise on screen "
    "(y points down); size_px = [height, width] of the whole sprite canvas in the image (its mask may fill "
    "only part of it); bbox_px = [x0, y0, x1, y1) of the layer's mask above 0.5; null when empty",
    "reconstruction_mse": "mean over channels and pixels of (reconstruction - input)^2, images in [0, 1]",
}


@dataclass
class ImageDecomposition:
    """One image explained by the model (tensors on the CPU, at the model's image size)."""

    name: str
    image: torch.Tensor  # (C, H, W) the input as the model saw it
    recon: torch.Tensor  # (C, H, W)
    layer_colors: torch.Tensor  # (L, C, H, W) object layers 1..L
    layer_masks: torch.Tensor  # (L, 1, H, W)
    background: torch.Tensor | None  # (C, H, W)
    instances: torch.Tensor  # (H, W) 0 background, l = front-most layer
    semantic: torch.Tensor  # (H, W) 0 background, sprite + 1
    objects: dict  # what objects.json holds

    def layer_rgba(self, layer: int) -> torch.Tensor:
        """Object layer `layer` (1..L) as colour + alpha: (C+1, H, W)."""
        return torch.cat([self.layer_colors[layer - 1], self.layer_masks[layer - 1]]).clamp(0, 1)

    def save(self, folder: str | Path) -> list[Path]:
        """Write input.png, recon.png, layer_<l>.png, background.png, instances.png, semantic.png,
        their coloured previews and objects.json into `folder`; return the files written.

        instances.png and semantic.png hold raw labels (0, 1, 2...), near-black in a viewer:
        instances_color.png and semantic_color.png show them with the report's colours."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        files = {"input.png": to_pil(self.image), "recon.png": to_pil(self.recon)}
        for layer in range(1, self.layer_colors.shape[0] + 1):
            files[f"layer_{layer}.png"] = to_pil(self.layer_rgba(layer))
        if self.background is not None:
            files["background.png"] = to_pil(self.background)
        files["instances.png"] = _label_pil(self.instances)
        files["semantic.png"] = _label_pil(self.semantic)
        n_layers, n_semantic = self.layer_colors.shape[0] + 1, self.objects["n_sprites"] + 2  # + empty sprite
        files["instances_color.png"] = to_pil(colorize(self.instances[None], n_layers)[0])
        files["semantic_color.png"] = to_pil(colorize(self.semantic[None], n_semantic)[0])
        written = []
        for name, img in files.items():
            img.save(folder / name)
            written.append(folder / name)
        (folder / "objects.json").write_text(json.dumps(self.objects, indent=1))
        written.append(folder / "objects.json")
        return written


def to_pil(x: torch.Tensor) -> Image.Image:
    """(C, H, W) in [0, 1] with C = 1, 2 (grey + alpha), 3 or 4 (RGBA) -> PIL image."""
    arr = (x.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[arr.shape[2]]
    return Image.fromarray(arr[..., 0] if mode == "L" else arr, mode)


def _label_pil(labels: torch.Tensor) -> Image.Image:
    """A label map (H, W): 8-bit when it fits, else 16-bit."""
    arr = labels.cpu().numpy()
    if arr.max(initial=0) < 256:
        return Image.fromarray(arr.astype(np.uint8), "L")
    return Image.fromarray(arr.astype(np.uint16), "I;16")


@torch.no_grad()
def explain(model, images: torch.Tensor, fill_background: bool = False):
    """Forward pass plus label maps: (Decomposition, instances (B, H, W), semantic (B, H, W)).

    fill_background: give pixels no layer covers to the layer of closest colour, as the
    evaluation does with `eval_with_bkg: false`.
    """
    out = model(images)
    instances = front_layer(out, images if fill_background else None)
    return out, instances, semantic_labels(out, instances)


class TrainedRun:
    """A trained model ready to decompose images (build it with `load_run`)."""

    def __init__(self, model, config: dict | None, source: Path, device: torch.device):
        self.model, self.config, self.source, self.device = model, config, source, device

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.model.img_size)

    def decompose(
        self, images, batch_size: int = 32, progress: bool = False, names: list[str] | None = None, crop: str = "none"
    ) -> list[ImageDecomposition]:
        """Explain images: a tensor (B, C, H, W) in [0, 1] or a list of image files.

        crop="center" cuts each image to the model's aspect ratio around its centre before
        resizing; "none" resizes the whole image (stretching one of another aspect ratio).
        """
        if torch.is_tensor(images):
            if images.ndim != 4 or images.shape[1] != self.model.C:
                raise DataError(f"expected images (B, {self.model.C}, H, W), got {tuple(images.shape)}")
            names = names or [str(i) for i in range(images.shape[0])]
            sources = [None] * images.shape[0]
        else:
            sources = [Path(p) for p in images]
            names = names or [p.stem for p in sources]
        results = []
        n = len(names)
        batches = range(0, n, batch_size)
        for start in tqdm(batches, desc="decompose", unit="batch", disable=not progress):
            stop = min(start + batch_size, n)
            if torch.is_tensor(images):
                batch = images[start:stop].float()
                original = [tuple(batch.shape[-2:])] * (stop - start)
                batch = fit_to_model(batch, self.image_size, crop)
            else:
                loaded = [load_image(p, self.model.C, self.image_size, crop) for p in sources[start:stop]]
                batch = torch.stack([x for x, _ in loaded])
                original = [size for _, size in loaded]
            results += self._decompose_batch(
                batch.to(self.device), names[start:stop], sources[start:stop], original, crop
            )
        return results

    @torch.no_grad()
    def _decompose_batch(self, images, names, sources, original_sizes, crop: str) -> list[ImageDecomposition]:
        model = self.model
        out, instances, semantic = explain(model, images)
        colors, masks = out.object_colors.cpu(), out.object_masks.cpu()  # (L, B, C, H, W), (L, B, 1, H, W)
        results = []
        for b, name in enumerate(names):
            objects = {
                "image": name,
                "source": str(sources[b]) if sources[b] is not None else None,
                "original_size": list(original_sizes[b]),
                "model_size": list(self.image_size),
                "resized": tuple(original_sizes[b]) != self.image_size,
                "crop": crop,
                "reconstruction_mse": float(out.loss[b]),
                "n_sprites": model.K,
                "layers": [self._layer_terms(out, instances, b, l) for l in range(model.L)],
                "background": self._background_terms(out, b),
                "conventions": CONVENTIONS,
            }
            results.append(
                ImageDecomposition(
                    name=name,
                    image=images[b].cpu(),
                    recon=out.recon[b].clamp(0, 1).cpu(),
                    layer_colors=colors[:, b],
                    layer_masks=masks[:, b],
                    background=out.background[b].cpu() if out.has_background else None,
                    instances=instances[b].cpu(),
                    semantic=semantic[b].cpu(),
                    objects=objects,
                )
            )
        return results

    def _layer_terms(self, out, instances, b: int, l: int) -> dict:
        model, betas = self.model, out.betas
        k = int(out.sprite_idx[l, b])
        mask = out.object_masks[l, b, 0] > MASK_THRESHOLD  # (H, W)
        is_empty_sprite = k >= model.K
        empty = is_empty_sprite or not bool(mask.any())
        entries, chain = [], torch.eye(3, dtype=torch.float64)
        stages = [("sprite", model.sprite_transformer, betas["sprite"], l * model.K + k, model.sprite_out_size)]
        if model.layer_transformer is not None:
            stages.append(("layer", model.layer_transformer, betas["layer"], l, model.img_size))
        for stage, sequence, stage_betas, head, out_size in stages:
            for transform, beta, active in zip(sequence.transforms, stage_betas, sequence.active):
                if not active or transform.kind == "identity":
                    continue
                if stage == "sprite" and is_empty_sprite:
                    row = torch.zeros(transform.n_params, dtype=torch.float64)  # the model gives the empty sprite β = 0
                else:
                    row = beta[head, b].detach().double().cpu()
                entries.append({"stage": stage, **transform.describe(row, out_size)})
                matrix = transform.sampling_matrix(row[None])  # (1, 3, 3) or None
                if matrix is not None:
                    chain = chain @ matrix[0]  # output -> input: later modules multiply on the right
        occlusion = out.object_occlusion[b].double().cpu()  # (L, L) δ[j, k]: j in front of k
        in_front = occlusion.sum(0)  # how much of the other layers covers each layer
        order = torch.argsort(in_front, stable=True)
        rank = int((order == l).nonzero()[0, 0])
        return {
            "layer": l + 1,
            "sprite": k,
            "empty_sprite": is_empty_sprite,
            "empty": empty,
            "occlusion_rank": rank,
            "mask_pixels": int(mask.sum()),
            "visible_pixels": int((instances[b] == l + 1).sum()),
            "placement": None if empty else placement(chain, model.sprite_size, model.img_size, mask),
            "transformations": entries,
        }

    def _background_terms(self, out, b: int) -> dict | None:
        model = self.model
        if not out.has_background:
            return None
        m = int(out.bkg_idx[b]) if out.bkg_idx is not None else 0
        entries = []
        sequence = model.bkg_transformer
        for transform, beta, active in zip(sequence.transforms, out.betas["bkg"], sequence.active):
            if active and transform.kind != "identity":
                terms = transform.describe(beta[m, b].detach().double().cpu(), model.img_size)
                entries.append({"stage": "background", **terms})
        return {"index": m, "transformations": entries}

    def decompose_folder(
        self, images_dir: str | Path, out: str | Path, batch_size: int = 32, progress: bool = True, crop: str = "none"
    ) -> list[Path]:
        """Decompose every image file of a folder into out/<stem>/; return the folders written."""
        files, out = list_image_files(images_dir), Path(out)
        stems = [p.stem for p in files]
        # Two files with one stem (a.png, a.jpg) keep their suffix in the folder name.
        names = [p.name if stems.count(p.stem) > 1 else p.stem for p in files]
        folders = []
        for start in range(0, len(files), batch_size * 8):  # bounded memory on large folders
            chunk = slice(start, start + batch_size * 8)
            for result in self.decompose(files[chunk], batch_size, progress, names[chunk], crop):
                result.save(out / result.name)
                folders.append(out / result.name)
        return folders


def load_run(
    run_dir: str | Path | None = None, checkpoint: str | Path | None = None, device: str | torch.device = "cpu"
) -> TrainedRun:
    """The model of a run folder (its model.pkl) or of a checkpoint file, in eval mode."""
    source = Path(checkpoint or run_dir)
    model, ckpt = load_trained_model(source, device)
    return TrainedRun(model, ckpt.get("config"), source, torch.device(device))


# ---- where an object lands -----------------------------------------------------------------
def placement(chain: torch.Tensor, sprite_size: tuple[int, int], img_size: tuple[int, int], mask: torch.Tensor) -> dict:
    """Where a sprite lands in the image, from the product of its modules' matrices."""
    (h, w), (H, W) = sprite_size, img_size
    centre, jac = input_landing(chain)
    # Normalised units to pixels: image W/2 px per unit, sprite w/2 px per unit.
    to_px = (
        torch.diag(torch.tensor([W / 2, H / 2], dtype=torch.float64))
        @ jac
        @ torch.diag(torch.tensor([2 / w, 2 / h], dtype=torch.float64))
    )
    scale_xy = [float(to_px[:, 0].norm()), float(to_px[:, 1].norm())]
    ys, xs = mask.nonzero(as_tuple=True)
    bbox = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1] if xs.numel() else None
    return {
        "center_px": rounded([(centre[0] + 1) * W / 2, (centre[1] + 1) * H / 2], 3),
        "scale": round(math.sqrt(abs(float(torch.linalg.det(to_px)))), 4),
        "scale_xy": rounded(scale_xy),
        "rotation_deg": round(math.degrees(math.atan2(float(to_px[1, 0]), float(to_px[0, 0]))), 3),
        "size_px": rounded([h * scale_xy[1], w * scale_xy[0]], 3),
        "bbox_px": bbox,
    }
