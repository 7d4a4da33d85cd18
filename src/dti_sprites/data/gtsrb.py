"""GTSRB-8: the 8-class subset of the German Traffic Sign benchmark used for clustering.

Layout (the original archive, docs/method.md §4):

    <root>/train/<class id>/*.ppm    class folders named by id, zero padded or not (00003 or 3)

Only classes 3, 7, 9, 11, 17, 18, 25 and 35 are kept, relabelled 0..7 in that order.
Images (of varying sizes) are resized to 28x28. Samples are (image (3, H, W) float in
[0, 1], label long).
"""

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import DataError
from .image_files import IMAGE_EXTENSIONS, fit_image, open_image, require_folder, to_tensor
from .splits import split_indices

GTSRB8_CLASSES = (3, 7, 9, 11, 17, 18, 25, 35)
IMG_SIZE = (28, 28)
LAYOUT = "GTSRB/train/<class id>/*.ppm"


def _class_folders(train_dir: Path) -> dict[int, Path]:
    """Class id -> folder, for sub-folders whose name is an integer."""
    folders = {}
    for sub in train_dir.iterdir():
        if sub.is_dir() and sub.name.isdigit():
            folders[int(sub.name)] = sub
    return folders


class GTSRB8(Dataset):
    n_channels = 3
    n_classes = len(GTSRB8_CLASSES)

    def __init__(self, root: str | Path, split: str = "train", img_size: tuple[int, int] | None = None):
        self.root = require_folder(Path(root), "gtsrb8", LAYOUT)
        train_dir = self.root / "train"
        if not train_dir.is_dir():
            raise DataError(f"folder {train_dir} not found; expected {LAYOUT}")
        folders = _class_folders(train_dir)
        missing = [c for c in GTSRB8_CLASSES if c not in folders]
        if missing:
            raise DataError(
                f"class folder {train_dir / f'{missing[0]:05d}'} not found ({len(missing)} of the 8 "
                f"missing); GTSRB-8 needs classes {', '.join(map(str, GTSRB8_CLASSES))} under {train_dir}"
            )
        files, labels = [], []
        for label, class_id in enumerate(GTSRB8_CLASSES):
            found = sorted(
                p
                for p in folders[class_id].iterdir()
                if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
            )
            if not found:
                raise DataError(f"class folder {folders[class_id]} holds no image; expected *.ppm files")
            files += found
            labels += [label] * len(found)
        self.img_size = tuple(img_size) if img_size is not None else IMG_SIZE
        keep = split_indices(len(files), split, str(self.root))
        self.files = [files[i] for i in keep]
        self.labels = np.asarray(labels, dtype=np.int64)[keep]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = fit_image(open_image(self.files[i]), self.img_size, "resize", Image.Resampling.BILINEAR)
        return to_tensor(img), torch.tensor(self.labels[i])
