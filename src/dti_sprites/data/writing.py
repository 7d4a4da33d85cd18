"""Writing dataset folders so that a reader never sees half of one.

Everything is written into a scratch folder beside the destination and moved into place
with one `os.replace` at the end; on any failure (an exception, Ctrl-C) the scratch folder
is removed and the destination is left as it was. Used by the synthetic generators and by
the download of the real archives.
"""

import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from ..errors import DataError

PARTIAL_MARK = ".partial-"  # scratch folders are named <destination name>.partial-<random hex>


def save_png(array: np.ndarray, path: Path) -> None:
    """Write one 8-bit PNG: (H, W) uint8 as 'L', (H, W, 3) uint8 as 'RGB'."""
    Image.fromarray(array).save(path)


def check_new_dir(out_dir: Path) -> None:
    """Refuse a destination that exists as a file or as a folder with anything in it."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DataError(f"output folder {out_dir} already exists and is not empty; expected a new or empty folder")


@contextmanager
def staging_dir(out_dir: str | Path) -> Iterator[Path]:
    """A fresh scratch folder beside out_dir, removed when the block ends, whatever happens.

    Inside the block, write there and finish with `publish(<the finished folder>, out_dir)`.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f"{out_dir.name}{PARTIAL_MARK}{secrets.token_hex(4)}"
    tmp.mkdir()  # unlike mkdtemp, keeps the user's umask for the final folder
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish(finished: Path, out_dir: Path) -> None:
    """Move a finished folder to out_dir in one rename (out_dir absent or empty)."""
    check_new_dir(out_dir)  # checked again: something may have appeared meanwhile
    if out_dir.exists():
        out_dir.rmdir()  # empty; os.replace needs it gone on some systems
    os.replace(finished, out_dir)


@contextmanager
def new_dataset_dir(
    out_dir: str | Path, subfolders: tuple[str, ...] = ("images", "masks", "sem_masks")
) -> Iterator[Path]:
    """Yield a scratch folder with `subfolders` that becomes out_dir when the block succeeds."""
    out_dir = Path(out_dir)
    check_new_dir(out_dir)
    with staging_dir(out_dir) as tmp:
        root = tmp / out_dir.name
        root.mkdir()
        for sub in subfolders:
            (root / sub).mkdir()
        yield root
        publish(root, out_dir)
