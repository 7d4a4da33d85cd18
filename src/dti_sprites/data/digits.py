"""scikit-learn's bundled handwritten digits: an offline clustering benchmark.

1,797 real 8x8 greyscale scans (16 grey levels, ten classes, UCI "optdigits" test set),
shipped inside scikit-learn, so no file is needed. Pixels are scaled to [0, 1] and the
images optionally upscaled (bilinear) to `dataset.img_size`, which gives the spatial
transformations a finer grid to work on. Samples are (image (1, H, W) float, label long).
"""

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .splits import split_indices

NATIVE_SIZE = (8, 8)
GREY_LEVELS = 16


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 8, 8) float32 in [0, 1] and labels (N,) int64."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return (bunch.images / GREY_LEVELS).astype(np.float32), bunch.target.astype(np.int64)


class Digits(Dataset):
    n_channels = 1
    n_classes = 10

    def __init__(self, root: str | Path | None = None, split: str = "train", img_size: tuple[int, int] | None = None):
        images, labels = load_digits_arrays()
        keep = split_indices(len(images), split, "digits (scikit-learn)")
        images = torch.from_numpy(images[keep]).unsqueeze(1)  # (N, 1, 8, 8)
        self.img_size = tuple(img_size) if img_size is not None else NATIVE_SIZE
        if self.img_size != NATIVE_SIZE:
            images = F.interpolate(images, size=self.img_size, mode="bilinear", align_corners=False).clamp_(0, 1)
        self.images = images  # (N, 1, H, W)
        self.labels = torch.from_numpy(labels[keep])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]
