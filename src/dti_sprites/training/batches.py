"""Training images kept in memory (on the training device when it has room), so a batch is
one index operation instead of a DataLoader round trip."""

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm


class ResidentImages:
    """All training images as uint8 (N, C, H, W) on `device`; batches come out as floats."""

    def __init__(self, dataset, device: torch.device, n_workers: int = 0, progress: bool = True):
        loader = DataLoader(dataset, batch_size=256, shuffle=False, num_workers=n_workers)
        chunks = []
        for batch in tqdm(loader, desc="loading images", disable=not progress, leave=False):
            images = batch[0] if isinstance(batch, (list, tuple)) else batch
            chunks.append((images * 255).round().to(torch.uint8))
        self.images = torch.cat(chunks).to(device)  # (N, C, H, W) uint8
        self.device = device

    def __len__(self) -> int:
        return self.images.shape[0]

    def batch(self, indices: torch.Tensor) -> torch.Tensor:
        return self.images[indices.to(self.device)].float().div_(255)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Up to n random images on the CPU, for data-driven initialisations."""
        picked = torch.randperm(len(self), generator=generator)[:n]
        return self.images[picked.to(self.device)].float().div_(255).cpu()
