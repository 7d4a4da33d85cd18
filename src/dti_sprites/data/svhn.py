"""SVHN (Street View House Numbers, cropped digits) for clustering.

Layout: torchvision's files, read directly (torchvision would try to download them):

    <root>/test_32x32.mat, train_32x32.mat [, extra_32x32.mat]
        X: (32, 32, 3, N) uint8, y: (N, 1) with labels 1..10, where 10 is the digit 0

The set is test + train, as in the paper; `dataset.use_extra: true` appends the 531k
`extra` images. Samples are (image (3, H, W) float in [0, 1], label long 0..9).
"""

from pathlib import Path

import numpy as np
import scipy.io
import torch
from torch.utils.data import Dataset

from ..errors import DataError
from .image_files import download_hint, require_folder, resize_image
from .splits import split_indices

FILES = ("test_32x32.mat", "train_32x32.mat")
EXTRA_FILE = "extra_32x32.mat"
IMG_SIZE = (32, 32)
LAYOUT = "torchvision's SVHN files test_32x32.mat and train_32x32.mat"


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 in 0..9 from one .mat file."""
    if not path.is_file():
        raise DataError(f"file {path} not found; expected {LAYOUT}; {download_hint('svhn')}")
    try:
        mat = scipy.io.loadmat(path, variable_names=("X", "y"))
    except (scipy.io.matlab.MatReadError, OSError, ValueError, TypeError, NotImplementedError) as err:
        raise DataError(f"cannot read {path}: {err}; expected a MATLAB v5 file with X and y") from None
    if "X" not in mat or "y" not in mat:
        raise DataError(f"file {path} lacks {'X' if 'X' not in mat else 'y'}; expected X (32, 32, 3, N) and y (N, 1)")
    images, labels = mat["X"], mat["y"].reshape(-1)
    if images.ndim != 4 or images.shape[2] != 3 or images.shape[3] != labels.shape[0]:
        raise DataError(
            f"file {path} holds X of shape {images.shape} and {labels.shape[0]} labels; "
            "expected X (H, W, 3, N) and y (N, 1)"
        )
    labels = labels.astype(np.int64)
    labels[labels == 10] = 0
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"file {path} holds labels outside 1..10")
    return np.ascontiguousarray(images.transpose(3, 2, 0, 1), dtype=np.uint8), labels  # (N, 3, H, W)


class SVHN(Dataset):
    n_channels = 3
    n_classes = 10

    def __init__(
        self, root: str | Path, split: str = "train", img_size: tuple[int, int] | None = None, use_extra: bool = False
    ):
        self.root = require_folder(Path(root), "svhn", LAYOUT)
        names = FILES + ((EXTRA_FILE,) if use_extra else ())
        parts = [read_svhn_mat(self.root / name) for name in names]
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        if len(images) == 0:
            raise DataError(f"the SVHN files in {self.root} hold no image")
        keep = split_indices(len(images), split, str(self.root))
        if len(keep) < len(images):  # "val"; the other splits are the whole set, not copied again
            images, labels = images[keep], labels[keep]
        self.images = torch.from_numpy(images)  # (N, 3, 32, 32) uint8
        self.labels = torch.from_numpy(labels)
        self.img_size = tuple(img_size) if img_size is not None else IMG_SIZE

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[i].float().div_(255)
        return resize_image(image, self.img_size), self.labels[i]
