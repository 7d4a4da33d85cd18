"""Which images each split of a single-object benchmark holds (docs/method.md §3).

These sets have no validation split of their own: "train" and "eval" are the whole set (the
clustering and cosegmentation scores are computed on the training images, as in the paper)
and "val" is 100 images drawn once with a fixed seed.
"""

import numpy as np

from ..errors import ConfigError

SPLITS = ("train", "val", "eval")
N_VAL = 100
VAL_SEED = 0


def split_indices(n: int, split: str, where: str, n_val: int = N_VAL, seed: int = VAL_SEED) -> np.ndarray:
    """Sorted indices into a set of n items for one split."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r} for dataset {where}; expected one of: {', '.join(SPLITS)}")
    if split == "val":
        rng = np.random.default_rng(seed)
        return np.sort(rng.choice(n, size=min(n_val, n), replace=False))
    return np.arange(n)
