"""Where training batches come from.

Two sources with one interface, so the trainer never knows which it has:
- `ResidentImages` keeps every training image as uint8 on the training device (on the GPU
  when it has room): a batch is then one index operation, with no loader round trip.
- `StreamedImages` reads batches through DataLoader workers, for collections too big to keep;
  workers quantise to uint8 like the resident copy (so both paths see the same pixels, and a
  quarter of the bytes cross to the GPU), pinned memory makes the copy asynchronous, and
  several batches are prefetched.

`image_source` picks one from `training.resident` (auto: resident when the uint8 copy fits).
"""

from typing import Iterator, Sequence

import os

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..errors import ConfigError

RESIDENT_SHARE_OF_FREE_GPU = 0.5  # leave the other half to activations and the model
RESIDENT_SHARE_OF_RAM = 0.25
PREFETCH_BATCHES_PER_WORKER = 4


def _images_of(item) -> torch.Tensor:
    return item[0] if isinstance(item, (list, tuple)) else item


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    return (images * 255).round_().to(torch.uint8)


def _private_generator() -> torch.Generator:
    """A loader draws its workers' seed from a generator; left alone it would take the global
    one and shift the noise the model draws after every epoch start."""
    return torch.Generator().manual_seed(0)


def _collate_uint8(items: Sequence) -> torch.Tensor:
    """Stack the images of dataset items as uint8 (labels are not needed to train)."""
    return _to_uint8(torch.stack([_images_of(item) for item in items]))


class _ImageSource:
    """What both sources share: random images for data-driven initialisations."""

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Up to n random images on the CPU."""
        picked = torch.randperm(len(self), generator=generator)[:n]
        return self.batch(picked).cpu()


class ResidentImages(_ImageSource):
    """All training images as uint8 (N, C, H, W) on `device`; batches come out as floats."""

    def __init__(self, dataset, device: torch.device, n_workers: int = 0, progress: bool = True):
        loader = DataLoader(
            dataset,
            batch_size=256,
            shuffle=False,
            num_workers=n_workers,
            collate_fn=_collate_uint8,
            generator=_private_generator(),
        )
        chunks = list(tqdm(loader, desc="loading images", disable=not progress, leave=False))
        self.images = torch.cat(chunks).to(device)  # (N, C, H, W) uint8
        self.device = device

    def __len__(self) -> int:
        return self.images.shape[0]

    def batch(self, indices: torch.Tensor) -> torch.Tensor:
        return self.images[indices.to(self.device)].float().div_(255)

    def batches(self, index_chunks: list[torch.Tensor]) -> Iterator[torch.Tensor]:
        """The batches of `index_chunks`, in order.

        The indices cross to the device in one copy: a blocking host-to-GPU copy per batch
        would make the host wait for the GPU at every step.
        """
        if not index_chunks:
            return iter(())
        on_device = torch.cat(index_chunks).to(self.device).split([len(chunk) for chunk in index_chunks])
        return (self.batch(chunk) for chunk in on_device)


class StreamedImages(_ImageSource):
    """Batches read on demand by DataLoader workers and copied to `device` asynchronously."""

    def __init__(self, dataset, device: torch.device, n_workers: int = 0):
        self.dataset, self.device, self.n_workers = dataset, device, n_workers

    def __len__(self) -> int:
        return len(self.dataset)

    def batch(self, indices: torch.Tensor) -> torch.Tensor:
        items = [self.dataset[int(i)] for i in indices]
        return _collate_uint8(items).to(self.device).float().div_(255)

    def batches(self, index_chunks: list[torch.Tensor]) -> Iterator[torch.Tensor]:
        """The batches of `index_chunks`, in order, read ahead by the workers."""
        pin = self.device.type == "cuda"
        prefetch = PREFETCH_BATCHES_PER_WORKER if self.n_workers > 0 else None
        loader = DataLoader(
            self.dataset,
            batch_sampler=[chunk.tolist() for chunk in index_chunks],
            num_workers=self.n_workers,
            collate_fn=_collate_uint8,
            pin_memory=pin,
            prefetch_factor=prefetch,
            generator=_private_generator(),
        )
        for images in loader:
            yield images.to(self.device, non_blocking=pin).float().div_(255)


def resident_bytes(dataset) -> int:
    """Size of the uint8 copy of every image of `dataset`."""
    h, w = dataset.img_size
    return len(dataset) * dataset.n_channels * h * w


def fits_in_memory(n_bytes: int, device: torch.device) -> bool:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return n_bytes <= RESIDENT_SHARE_OF_FREE_GPU * free
    return n_bytes <= RESIDENT_SHARE_OF_RAM * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def image_source(dataset, device: torch.device, resident: str | bool, n_workers: int, progress: bool = True):
    """The training images as `training.resident` asks: True, False or "auto" (resident if it fits)."""
    if resident == "auto":
        resident = fits_in_memory(resident_bytes(dataset), device)
    elif not isinstance(resident, bool):
        raise ConfigError(f"training.resident: expected auto, true or false, got {resident!r}")
    if resident:
        return ResidentImages(dataset, device, n_workers, progress)
    return StreamedImages(dataset, device, n_workers)
