"""Datasets found by config name.

A config names a dataset (`dataset: tetrominoes`) and a data root; `get_dataset` resolves the
dataset's own sub-folder under that root. Adding a dataset is one `register_dataset` call.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from torch.utils.data import Dataset

from ..registry import Registry
from .multi_object import MultiObjectDataset, load_tensors


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

    def __call__(self, root: str | Path, split: str, **kwargs) -> Dataset:
        return self.factory(root, split, **kwargs)


DATASETS: Registry[DatasetEntry] = Registry("dataset")


def register_dataset(name: str, folder: str, n_classes: int | None,
                     native_shape: tuple[int, int, int] | None = None):
    """Decorator adding a factory (root, split, **kwargs) -> Dataset under `name`."""

    def decorator(factory: Callable[..., Dataset]) -> Callable[..., Dataset]:
        DATASETS.register(name)(DatasetEntry(name, folder, n_classes, factory, native_shape))
        return factory

    return decorator


def _multi_object(name: str, folder: str, n_classes: int, native_shape: tuple[int, int, int]) -> None:
    def factory(root, split, **kwargs):
        return MultiObjectDataset(root, split, name=name, n_classes=n_classes, **kwargs)

    register_dataset(name, folder, n_classes, native_shape)(factory)


_multi_object("tetrominoes", "tetrominoes", 20, (3, 35, 35))  # 19 shapes + background
_multi_object("dsprites_gray", "dsprites_gray", 4, (3, 64, 64))  # square, ellipse, heart + background
_multi_object("clevr6", "clevr6", 7, (3, 128, 128))


def get_dataset(name: str, data_root: str | Path, split: str, **kwargs) -> Dataset:
    """Build dataset `name` from data_root/<its folder> for one split."""
    entry = DATASETS.get(name)
    return entry(Path(data_root) / entry.folder, split, **kwargs)


__all__ = ["DATASETS", "DatasetEntry", "MultiObjectDataset", "get_dataset", "load_tensors", "register_dataset"]
