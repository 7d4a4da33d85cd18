"""Turn any folder of images into an `image_folder` dataset of one size (default 128x128).

Used by `python -m dti_sprites resize-images` and `process_insta_santa.sh`. Every image under
the source folder (recursively) is centre cropped to the target aspect ratio and resized
(or only resized), converted to RGB and written as PNG or JPEG under the output folder with
its relative path kept. Unreadable files are skipped and reported by name. The output
folder must be new (or empty) and appears only once every image is written.
"""

import sys
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from ..errors import DataError
from .image_files import RESIZE_POLICIES, fit_image, list_images, open_image
from .writing import new_dataset_dir

FORMATS = {"png": ".png", "jpg": ".jpg"}
JPEG_QUALITY = 95


def _output_name(rel: Path, suffix: str, taken: set[Path]) -> Path:
    """rel with the new suffix; `x.jpg` and `x.png` side by side keep distinct names."""
    name = rel.with_suffix(suffix)
    if name in taken:
        name = rel.with_name(f"{rel.stem}_{rel.suffix.lstrip('.').lower()}{suffix}")
    taken.add(name)
    return name


def resize_folder(
    src: str | Path,
    out: str | Path,
    size: tuple[int, int] = (128, 128),
    policy: str = "center_crop",
    fmt: str = "png",
    progress: bool = True,
) -> tuple[int, list[str]]:
    """Write every readable image of src to out at `size`; return (written, unreadable files)."""
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise DataError(f"source folder {src} not found")
    if policy not in RESIZE_POLICIES:
        raise DataError(f"unknown resize policy {policy!r}; expected one of {', '.join(RESIZE_POLICIES)}")
    if fmt not in FORMATS:
        raise DataError(f"unknown output format {fmt!r}; expected one of {', '.join(FORMATS)}")
    files = list_images(src)
    if not files:
        raise DataError(f"folder {src} holds no image file (looked recursively for .jpg, .png, ...)")
    if out.resolve() == src.resolve():
        raise DataError(f"output folder {out} is the source folder; choose another so originals are kept")
    written, failed, taken = 0, [], set()
    with new_dataset_dir(out, subfolders=()) as root:  # out appears complete or not at all
        for path in tqdm(files, desc="resizing", unit="img", disable=not progress):
            try:
                img = fit_image(open_image(path), size, policy, Image.Resampling.BICUBIC)
            except DataError as err:
                failed.append(str(path))
                print(f"skipped: {err}", file=sys.stderr)
                continue
            target = root / _output_name(path.relative_to(src), FORMATS[fmt], taken)
            target.parent.mkdir(parents=True, exist_ok=True)
            if fmt == "jpg":
                img.save(target, quality=JPEG_QUALITY)
            else:
                img.save(target)
            written += 1
        if written == 0:
            raise DataError(f"no image of {src} could be read ({len(failed)} unreadable, e.g. {failed[0]})")
    return written, failed
