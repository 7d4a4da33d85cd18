"""The images `decompose` explains: listing a folder, reading files, bringing them to the model's size.

Resizing an image of another aspect ratio than the model's stretches it, which the model
never saw during training; `crop="center"` first cuts the widest centred window of the
model's aspect ratio instead. `count_stretched` lets the command line say how many
images a plain resize would stretch.
"""

from pathlib import Path

import torch
from PIL import Image

from ..data.image_files import IMAGE_EXTENSIONS, centred_window, open_image, resize_image, to_tensor
from ..errors import DataError

CROPS = ("none", "center")  # none: resize the whole image; center: centre crop to the aspect ratio first


def list_image_files(folder: str | Path) -> list[Path]:
    """The image files directly inside `folder`, sorted; DataError when there are none."""
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"image folder {folder} not found")
    if not folder.is_dir():
        raise DataError(
            f"--images {folder} is a file, not a folder; expected a folder of images "
            "(put a single image in a folder of its own)"
        )
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise DataError(f"folder {folder} holds no image ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return files


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image file, from its header only."""
    try:
        with Image.open(path) as img:
            return img.height, img.width
    except (OSError, ValueError, SyntaxError) as err:
        raise DataError(f"cannot read image {path}: {err}") from None


def count_stretched(files: list[Path], size: tuple[int, int]) -> int:
    """How many files have another aspect ratio than size (H, W): a plain resize stretches them."""
    H, W = size
    return sum(h * W != w * H for h, w in map(image_size, files))


def load_image(
    path: str | Path, n_channels: int, size: tuple[int, int], crop: str = "none"
) -> tuple[torch.Tensor, tuple[int, int]]:
    """An image file as (C, H, W) in [0, 1] at `size`, with its original (H, W)."""
    img = open_image(Path(path), "RGB" if n_channels == 3 else "L")
    return fit_to_model(to_tensor(img), size, crop), (img.height, img.width)


def fit_to_model(x: torch.Tensor, size: tuple[int, int], crop: str = "none") -> torch.Tensor:
    """(C, h, w) or (B, C, h, w) -> same at `size`: centre crop (crop="center") then resize."""
    if crop not in CROPS:
        raise DataError(f"crop {crop!r}: expected one of {', '.join(CROPS)}")
    if crop == "center":
        x = center_crop(x, size)
    return resize_image(x, size)  # as the training loaders resample


def center_crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The widest centred window of x (..., h, w) with the aspect ratio of size (H, W)."""
    top, left, ch, cw = centred_window(x.shape[-2:], size)
    return x[..., top : top + ch, left : left + cw]
