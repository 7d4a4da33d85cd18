"""Reading image files: decoding, listing, cropping, resizing.

The one place images are decoded and resampled: the dataset loaders, `decompose`'s inputs
and the sprite initialisations (model/prototypes.py) all go through `open_image`,
`to_tensor` and `resize_image`. Images come out as float tensors (C, H, W) in [0, 1]. Every
failure to read a file becomes a DataError naming that file, so a broken download is
reported by name instead of as a PIL traceback deep inside a DataLoader worker.
"""

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import ConfigError, DataError

# Extensions an image folder may hold (lower case); anything else is ignored.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# How an image of another aspect ratio is brought to the target size.
RESIZE_POLICIES = ("center_crop", "resize")


def download_hint(name: str) -> str:
    return f"get it with `./download_data.sh {name}`"


def require_folder(path: Path, name: str, layout: str) -> Path:
    """The dataset folder, or a DataError saying where it was expected and how to get it."""
    if not path.is_dir():
        raise DataError(f"dataset folder {path} not found; expected {layout}; {download_hint(name)}")
    return path


def open_image(path: Path, mode: str | None = "RGB", expected: str = "") -> Image.Image:
    """Decode a whole file now (PIL is lazy), converted to `mode` (None: as stored); a DataError
    naming the file, ending with `expected` (what the reader wanted) when given."""
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert(mode) if mode is not None else img.copy()
    except FileNotFoundError:
        raise DataError(f"file {path} not found") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        hint = f"; expected {expected}" if expected else ""
        raise DataError(f"cannot read image {path}: {err}{hint}") from None


def list_images(folder: Path, recursive: bool = True) -> list[Path]:
    """Image files under `folder` (hidden files skipped), in a stable sorted order."""
    pattern = folder.rglob("*") if recursive else folder.iterdir()
    files = [
        p
        for p in pattern
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    ]
    return sorted(files)


def centred_window(image_size: tuple[int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the widest centred window of an image (h, w) with the
    aspect ratio of size (H, W): what training and decompose crop before resizing."""
    (h, w), (H, W) = image_size, size
    scale = min(h / H, w / W)
    ch, cw = max(1, round(H * scale)), max(1, round(W * scale))
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def fit_image(
    img: Image.Image, size: tuple[int, int], policy: str = "center_crop", resample: int = Image.Resampling.BICUBIC
) -> Image.Image:
    """Bring a PIL image to size (H, W): centre crop to the target aspect ratio then resize,
    or resize directly (`resize`, aspect ratio not kept)."""
    if policy not in RESIZE_POLICIES:
        raise ConfigError(f"dataset.resize_policy: expected one of {', '.join(RESIZE_POLICIES)}, got {policy!r}")
    h, w = size
    if policy == "center_crop":
        top, left, ch, cw = centred_window((img.height, img.width), size)
        img = img.crop((left, top, left + cw, top + ch))
    if (img.height, img.width) != (h, w):
        img = img.resize((w, h), resample=resample)
    return img


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL image -> float (C, H, W) in [0, 1]."""
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255)


def resize_image(images: torch.Tensor, size: tuple[int, int], clamp: bool = True) -> torch.Tensor:
    """Antialiased bilinear resize of float images (C, H, W) or (B, C, H, W) to size (H, W).

    Antialiasing averages every source pixel a target pixel covers when shrinking, where
    plain bilinear would skip pixels and alias thin strokes. `clamp` keeps the result in
    [0, 1], which the rounded filter weights overshoot by up to a few ulps.
    """
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    batch = images if images.ndim == 4 else images[None]  # (B, C, H, W)
    out = F.interpolate(batch, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
    if clamp:
        out = out.clamp_(0, 1)
    return out if images.ndim == 4 else out[0]
