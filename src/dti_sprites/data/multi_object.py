"""Loader for the multi-object benchmarks (Tetrominoes, Multi-dSprites, CLEVR6).

All three share one on-disk layout (docs/method.md §4), with integer file stems:

    <root>/images/{i}.png      any PIL mode, converted to RGB
    <root>/masks/{i}.png       instance ids, 0 = background (8 or 16-bit)
    <root>/sem_masks/{i}.png   class ids, 0 = background

Samples are (image (C, H, W) float in [0, 1], instance (H, W) long, semantic (H, W) long).
Splits follow docs/method.md §3: "train" is every image, "val" 100 fixed training images and
"eval" the first 320 images.
"""

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm import tqdm

from ..errors import ConfigError, DataError
from .image_files import open_image, resize_image, to_tensor

SPLITS = ("train", "val", "eval")
MASK_FOLDERS = ("masks", "sem_masks")
# Datasets our own generators can produce (python -m dti_sprites make-data <name>).
GENERATED = ("tetrominoes", "dsprites_gray")


def missing_dataset_message(path: Path, name: str | None) -> str:
    """One line that says where the dataset was expected and how to get it."""
    fetch = "fetch the original with ./download_data.sh"
    if name in GENERATED:
        hint = f"generate the synthetic stand-in with `python -m dti_sprites make-data {name} --out {path}` or {fetch}"
    else:
        hint = fetch
    return f"dataset folder {path} not found; {hint}"


def _open_image(path: Path) -> Image.Image:
    """One file decoded as stored: masks keep their 8 or 16-bit label values."""
    return open_image(path, mode=None, expected="a valid PNG")


def _mask_array(img: Image.Image, path: Path) -> np.ndarray:
    """Label map (H, W) int64 from an 'L', 'P', 'I', 'I;16' or grey-as-RGB file."""
    arr = np.asarray(img)
    if arr.ndim == 3:
        # Some tools save label maps as RGB with equal channels; anything else is ambiguous.
        if not (arr == arr[..., :1]).all():
            raise DataError(f"mask {path} has {arr.shape[2]} differing channels; expected a single-channel label map")
        arr = arr[..., 0]
    return arr.astype(np.int64)


def _nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each output pixel under nearest-neighbour resizing (pixel centres)."""
    return np.minimum(((np.arange(n_out) + 0.5) * n_in / n_out).astype(np.int64), n_in - 1)


def _int_stem(path: Path) -> int:
    try:
        return int(path.stem)
    except ValueError:
        raise DataError(f"file {path} has a non-integer name; expected images/<i>.png with i = 0, 1, ...") from None


class MultiObjectDataset(Dataset):
    """Images with instance and semantic masks, read lazily from disk."""

    n_channels = 3

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        img_size: tuple[int, int] | None = None,
        n_val: int = 100,
        n_eval: int = 320,
        val_seed: int = 0,
        name: str | None = None,
        n_classes: int | None = None,
        skip_corrupt: bool = False,
    ):
        self.root = Path(root)
        self.split = split
        self.name = name
        self.n_classes = n_classes
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r} for dataset {self.root}; expected one of: {', '.join(SPLITS)}")
        if not self.root.is_dir():
            raise DataError(missing_dataset_message(self.root, name))
        image_dir = self.root / "images"
        if not image_dir.is_dir():
            raise DataError(f"folder {image_dir} not found; expected images/<i>.png beside masks/ and sem_masks/")
        files = [p for p in image_dir.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith(".")]
        if not files:
            raise DataError(f"folder {image_dir} holds no .png image; expected images/<i>.png files")
        self.stems = sorted(_int_stem(p) for p in files)  # numeric order: 0, 1, 2, ..., 10
        for folder in MASK_FOLDERS:
            mask_dir = self.root / folder
            if not mask_dir.is_dir():
                raise DataError(f"folder {mask_dir} not found; expected {folder}/<i>.png for every image")
            present = {p.name for p in mask_dir.iterdir()}
            missing = [s for s in self.stems if f"{s}.png" not in present]
            if missing:
                raise DataError(
                    f"file {mask_dir / f'{missing[0]}.png'} not found ({len(missing)} missing in {mask_dir}); "
                    f"expected {folder}/<i>.png for every image"
                )

        self.skipped: list[Path] = []
        if skip_corrupt:
            self.stems, self.skipped = self._readable_stems()
            if not self.stems:
                raise DataError(f"folder {image_dir}: every image is unreadable ({len(self.skipped)} files)")
        first = image_dir / f"{self.stems[0]}.png"
        img = _open_image(first)
        self.file_size = (img.height, img.width)  # (H, W) every file must share unless resized
        # With an explicit img_size every file is resized, so files may differ in size.
        self.check_size = img_size is None
        self.img_size = tuple(img_size) if img_size is not None else self.file_size

        n = len(self.stems)
        if split == "train":
            self.indices = np.arange(n)
        elif split == "val":
            rng = np.random.default_rng(val_seed)
            self.indices = np.sort(rng.choice(n, size=min(n_val, n), replace=False))
        else:
            self.indices = np.arange(min(n_eval, n))

    def _readable_stems(self) -> tuple[list[int], list[Path]]:
        """Stems whose image and masks all decode; the unreadable files (opt-in `skip_corrupt`)."""
        kept, bad = [], []
        for stem in self.stems:
            broken = None
            for folder in ("images", *MASK_FOLDERS):
                path = self.root / folder / f"{stem}.png"
                try:
                    _open_image(path).load()
                except (DataError, OSError):
                    broken = path
                    break
            if broken is None:
                kept.append(stem)
            else:
                bad.append(broken)
        return kept, bad

    def __len__(self) -> int:
        return len(self.indices)

    def paths(self, i: int) -> tuple[Path, Path, Path]:
        """Image, instance-mask and semantic-mask files of sample i."""
        name = f"{self.stems[self.indices[i]]}.png"
        return self.root / "images" / name, self.root / "masks" / name, self.root / "sem_masks" / name

    def _check_size(self, img: Image.Image, path: Path) -> None:
        size = (img.height, img.width)
        if size != self.file_size:
            first = self.root / "images" / f"{self.stems[0]}.png"
            raise DataError(
                f"file {path} is {size[0]}x{size[1]} (HxW) but {first} is "
                f"{self.file_size[0]}x{self.file_size[1]}; expected every image and mask to share one size "
                "(or pass img_size to resize)"
            )

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        image_path, inst_path, sem_path = self.paths(i)
        img = _open_image(image_path)
        if self.check_size:
            self._check_size(img, image_path)
        h, w = self.img_size
        image = resize_image(to_tensor(img.convert("RGB")), (h, w))  # (3, h, w)

        masks = []
        for path in (inst_path, sem_path):
            m_img = _open_image(path)
            if (m_img.height, m_img.width) != (img.height, img.width):
                raise DataError(
                    f"file {path} is {m_img.height}x{m_img.width} (HxW) but {image_path} is "
                    f"{img.height}x{img.width}; expected masks the size of their image"
                )
            mask = _mask_array(m_img, path)  # (H, W) int64
            if mask.shape != (h, w):
                rows, cols = _nearest_indices(mask.shape[0], h), _nearest_indices(mask.shape[1], w)
                mask = mask[rows[:, None], cols[None, :]]  # (h, w)
            masks.append(torch.from_numpy(np.ascontiguousarray(mask)))
        return image, masks[0], masks[1]


def load_tensors(dataset: Dataset, indices=None, progress: bool = False) -> tuple[torch.Tensor, ...]:
    """Stack samples into (N, C, H, W) float, (N, H, W) long, (N, H, W) long tensors.

    Small datasets are then kept resident in memory (or on the GPU), which beats a
    DataLoader reading thousands of tiny PNGs every epoch.
    """
    indices = range(len(dataset)) if indices is None else list(indices)
    if len(indices) == 0:
        raise ValueError("load_tensors needs at least one index")
    images = insts = sems = None
    for k, i in enumerate(tqdm(indices, desc="loading images", disable=not progress)):
        image, inst, sem = dataset[i]
        if images is None:
            n = len(indices)
            images = torch.empty((n, *image.shape), dtype=image.dtype)  # (N, C, H, W)
            insts = torch.empty((n, *inst.shape), dtype=torch.long)  # (N, H, W)
            sems = torch.empty((n, *sem.shape), dtype=torch.long)  # (N, H, W)
        images[k], insts[k], sems[k] = image, inst, sem
    return images, insts, sems
