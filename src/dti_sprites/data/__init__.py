"""Datasets found by config name.

A config names a dataset (`dataset.name: tetrominoes`) and where its files are (`dataset.path`,
or a data root holding the dataset's own sub-folder); `build_dataset` turns that section into
a Dataset, for training, evaluation, the command line and the tests alike. Adding a dataset
is one `register_dataset` call.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from torch.utils.data import Dataset

from ..config import size_pair
from ..errors import ConfigError
from ..registry import Registry
from .digits import Digits
from .gtsrb import GTSRB8
from .image_folder import ImageFolder, instagram
from .multi_object import MultiObjectDataset, load_tensors
from .svhn import SVHN
from .weizmann_horse import WeizmannHorse


@dataclass(frozen=True)
class DatasetEntry:
    """A factory (root, split, **kwargs) -> Dataset with the sub-folder and class count it
    expects, so callers need not know either."""

    name: str
    folder: str
    n_classes: int | None
    factory: Callable[..., Dataset]
    native_shape: tuple[int, int, int] | None = None  # (C, H, W) of the published files, for benchmarks
    kind: str = "multi_object"  # which evaluation applies: multi_object, clustering, cosegmentation, unlabelled
    options: tuple[str, ...] = ()  # `dataset` config keys passed on to the factory as keyword arguments
    reads_folder: bool = True  # False: the data ships with a library, so `dataset.path` has nothing to replace

    def __call__(self, root: str | Path, split: str, **kwargs) -> Dataset:
        return self.factory(root, split, **kwargs)


DATASETS: Registry[DatasetEntry] = Registry("dataset")


def register_dataset(
    name: str,
    folder: str,
    n_classes: int | None,
    native_shape: tuple[int, int, int] | None = None,
    kind: str = "multi_object",
    options: tuple[str, ...] = (),
    reads_folder: bool = True,
):
    """Decorator adding a factory (root, split, **kwargs) -> Dataset under `name`."""

    def decorator(factory: Callable[..., Dataset]) -> Callable[..., Dataset]:
        DATASETS.register(name)(
            DatasetEntry(name, folder, n_classes, factory, native_shape, kind, options, reads_folder)
        )
        return factory

    return decorator


def _multi_object(name: str, folder: str, n_classes: int, native_shape: tuple[int, int, int]) -> None:
    def factory(root, split, **kwargs):
        return MultiObjectDataset(root, split, name=name, n_classes=n_classes, **kwargs)

    register_dataset(name, folder, n_classes, native_shape)(factory)


_multi_object("tetrominoes", "tetrominoes", 20, (3, 35, 35))  # 19 shapes + background
_multi_object("dsprites_gray", "dsprites_gray", 4, (3, 64, 64))  # square, ellipse, heart + background
_multi_object("clevr6", "clevr6", 7, (3, 128, 128))

# Single-object benchmarks (docs/method.md §3, §4): clustering, cosegmentation and unlabelled collections.
register_dataset("gtsrb8", "GTSRB", 8, (3, 28, 28), kind="clustering")(GTSRB8)
register_dataset("svhn", "svhn", 10, (3, 32, 32), kind="clustering", options=("use_extra",))(SVHN)
register_dataset("digits", "digits", 10, (1, 8, 8), kind="clustering", reads_folder=False)(Digits)  # in scikit-learn
register_dataset("weizmann_horse", "weizmann_horse", 2, (3, 128, 128), kind="cosegmentation")(WeizmannHorse)
register_dataset("instagram", "instagram", None, (3, 128, 128), kind="unlabelled", options=("tag", "resize_policy"))(
    instagram
)
# Any folder: `dataset.path` names it (the data_root fallback is <data_root>/images).
register_dataset("image_folder", "images", None, kind="unlabelled", options=("resize_policy",))(ImageFolder)


def dataset_root(cfg: dict) -> Path:
    """`dataset.path` when given, else <data_root>/<the dataset's own folder>."""
    data = cfg["dataset"]
    return Path(data["path"]) if data["path"] else Path(data["data_root"]) / DATASETS.get(data["name"]).folder


def build_dataset(cfg: dict, split: str) -> tuple[Dataset, DatasetEntry]:
    """The config's dataset for one split, with its registry entry (class count, benchmark kind)."""
    data = cfg["dataset"]
    entry = DATASETS.get(data["name"])
    img_size = None if data["img_size"] is None else size_pair(data["img_size"], (0, 0))
    options = {key: data[key] for key in entry.options}  # e.g. instagram's tag, svhn's use_extra
    if data["skip_corrupt"]:
        if entry.kind != "multi_object":
            raise ConfigError(f"dataset.skip_corrupt: supported for multi-object datasets, not {entry.name!r}")
        options["skip_corrupt"] = True
    return entry(dataset_root(cfg), split, img_size=img_size, **options), entry


__all__ = [
    "DATASETS",
    "DatasetEntry",
    "MultiObjectDataset",
    "build_dataset",
    "dataset_root",
    "load_tensors",
    "register_dataset",
]
