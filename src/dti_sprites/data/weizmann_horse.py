"""Weizmann Horse: 327 horse photographs with foreground masks, for cosegmentation.

Layout (docs/method.md §4):

    <root>/images/*.jpg    photographs of various sizes
    <root>/masks/*.png     one mask per image with the same stem, foreground > 0

Images and masks are paired in sorted order and must share stems. Both are resized to
128x128 (masks with nearest neighbour). Samples are (image (3, H, W) float in [0, 1],
mask (H, W) long 0/1).
"""

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import DataError
from .image_files import fit_image, open_image, require_folder, to_tensor
from .splits import split_indices

IMG_SIZE = (128, 128)
LAYOUT = "weizmann_horse/images/*.jpg with masks/*.png of the same names"


def _files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"folder {folder} not found; expected {LAYOUT}")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes and not p.name.startswith("."))


def pair_files(root: Path) -> list[tuple[Path, Path]]:
    """(image, mask) pairs in sorted order; DataError naming the first file without a partner."""
    images = _files(root / "images", (".jpg", ".jpeg"))
    masks = _files(root / "masks", (".png",))
    if not images:
        raise DataError(f"folder {root / 'images'} holds no .jpg image; expected {LAYOUT}")
    image_stems, mask_stems = {p.stem for p in images}, {p.stem for p in masks}
    for img in images:
        if img.stem not in mask_stems:
            raise DataError(
                f"image {img} has no mask {root / 'masks' / (img.stem + '.png')} "
                f"({len(images)} images, {len(masks)} masks)"
            )
    for mask in masks:
        if mask.stem not in image_stems:
            raise DataError(
                f"mask {mask} has no image {root / 'images' / (mask.stem + '.jpg')} "
                f"({len(images)} images, {len(masks)} masks)"
            )
    return list(zip(images, masks))


def binary_mask(img: Image.Image, path: Path) -> np.ndarray:
    """Foreground map (H, W) uint8 0/1 from a 0/1 or 0/255 mask (grey, palette or RGB)."""
    arr = np.asarray(img)
    if arr.ndim == 3:
        arr = arr[..., :3].max(-1)
    if arr.size == 0:
        raise DataError(f"mask {path} is empty")
    # 0/255 masks (and anti-aliased edges) split at mid-grey; 0/1 masks at 1.
    threshold = 128 if arr.max() > 1 else 1
    return (arr >= threshold).astype(np.uint8)


class WeizmannHorse(Dataset):
    n_channels = 3
    n_classes = 2

    def __init__(self, root: str | Path, split: str = "train", img_size: tuple[int, int] | None = None):
        self.root = require_folder(Path(root), "weizmann_horse", LAYOUT)
        pairs = pair_files(self.root)
        self.pairs = [pairs[i] for i in split_indices(len(pairs), split, str(self.root))]
        self.img_size = tuple(img_size) if img_size is not None else IMG_SIZE

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, mask_path = self.pairs[i]
        img = open_image(image_path)
        mask_img = open_image(mask_path, mode=None)
        if mask_img.size != img.size:
            raise DataError(
                f"mask {mask_path} is {mask_img.height}x{mask_img.width} (HxW) but {image_path} is "
                f"{img.height}x{img.width}; expected masks the size of their image"
            )
        image = to_tensor(fit_image(img, self.img_size, "resize", Image.Resampling.BILINEAR))
        mask = Image.fromarray(binary_mask(mask_img, mask_path))
        mask = fit_image(mask, self.img_size, "resize", Image.Resampling.NEAREST)
        return image, torch.from_numpy(np.asarray(mask, dtype=np.int64).copy())
