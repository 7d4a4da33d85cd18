"""Any folder of images, without labels (`image_folder`), and the Instagram collections.

`image_folder` reads every image under `dataset.path`, recursively, in sorted order, and
brings each to `dataset.img_size` (default 128x128) by `dataset.resize_policy`: centre crop
to the target's aspect ratio then resize (`center_crop`, the default) or a plain resize.

`instagram` is the same on `<data_root>/instagram/<dataset.tag>/train/` (tag `santaphoto`
by default), the layout of the original archives; `process_insta_santa.sh` builds one.
Samples are 1-tuples (image (3, H, W) float in [0, 1],).
"""

from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..errors import DataError
from .image_files import fit_image, list_images, open_image, to_tensor
from .splits import split_indices

IMG_SIZE = (128, 128)
DEFAULT_TAG = "santaphoto"


class ImageFolder(Dataset):
    n_channels = 3
    n_classes = None

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        img_size: tuple[int, int] | None = None,
        resize_policy: str = "center_crop",
        missing_hint: str | None = None,
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            hint = missing_hint or "set dataset.path to a folder of images"
            raise DataError(f"image folder {self.root} not found; {hint}")
        files = list_images(self.root)
        if not files:
            raise DataError(f"folder {self.root} holds no image file (looked recursively for .jpg, .png, ...)")
        self.files = [files[i] for i in split_indices(len(files), split, str(self.root))]
        self.img_size = tuple(img_size) if img_size is not None else IMG_SIZE
        self.resize_policy = resize_policy
        fit_image(open_image(self.files[0]), self.img_size, resize_policy)  # a bad policy fails now, not in a worker

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor]:
        return (to_tensor(fit_image(open_image(self.files[i]), self.img_size, self.resize_policy)),)


def instagram(
    root: str | Path,
    split: str = "train",
    img_size: tuple[int, int] | None = None,
    tag: str = DEFAULT_TAG,
    resize_policy: str = "center_crop",
) -> ImageFolder:
    """The collection of one hashtag: <root>/<tag>/train/*."""
    folder = Path(root) / tag / "train"
    hint = (
        f"expected instagram/<tag>/train/* images; get it with `./download_data.sh instagram` "
        f"or build it from scraped images with ./process_insta_santa.sh"
    )
    return ImageFolder(folder, split, img_size, resize_policy, missing_hint=hint)
