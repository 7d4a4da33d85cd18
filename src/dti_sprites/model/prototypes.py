"""Initial values of sprites (appearances, masks) and backgrounds (docs/method.md §1.1).

`sample`, `mean` and `kmeans` look at training images; they receive a callable
`sample_images(n)` returning up to n random training images (n, C, H, W) in [0, 1], so the
data is only read when an initialisation needs it.
"""

from typing import Callable

import torch

from ..data.image_files import resize_image
from ..errors import ConfigError

SampleImages = Callable[[int], torch.Tensor]
KMEANS_IMAGES_PER_CLUSTER = 100
MEAN_IMAGES = 100


def gaussian_window(size: tuple[int, int], std: float) -> torch.Tensor:
    """Separable Gaussian of `std` pixels, peak 1 at the centre: (h, w)."""

    def profile(n):
        coords = torch.arange(n, dtype=torch.float32) - (n - 1) / 2
        return torch.exp(-0.5 * (coords / std) ** 2)

    return profile(size[0])[:, None] * profile(size[1])[None, :]


def _resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Training images at the sprite size; unclamped, so that a seed starts from the same
    sprites as before the loaders' resize was shared (a clamp moves some pixels by an ulp or two)."""
    return resize_image(images, size, clamp=False)


def init_tensor(
    method: str,
    n: int,
    channels: int,
    size: tuple[int, int],
    value: float,
    std: float,
    sample_images: SampleImages | None,
    generator: torch.Generator,
    key: str,
    cache: dict | None = None,
) -> torch.Tensor:
    """Build an (n, channels, h, w) initial tensor with the named method.

    `cache` shares k-means centroids between calls, so that appearance k and mask k of a
    sprite come from the same cluster.
    """
    shape = (n, channels, *size)
    if method == "constant":
        return torch.full(shape, value)
    if method == "gaussian":
        return gaussian_window(size, std).expand(shape).clone()
    if method == "random":
        return torch.rand(shape, generator=generator)
    if method == "soup":
        return value + 0.1 * (torch.rand(shape, generator=generator) - 0.5)
    if method == "random_color":
        return torch.rand(n, channels, 1, 1, generator=generator).expand(shape).clone()
    if sample_images is None:
        raise ConfigError(f"model.{key}: {method!r} initialisation needs training images")
    if method == "sample":
        images = _resize(sample_images(n), size)
        if images.shape[0] < n:
            raise ConfigError(f"model.{key}: 'sample' needs {n} training images, the dataset has {images.shape[0]}")
        return _match_channels(images, channels)
    if method == "mean":
        mean = _resize(sample_images(MEAN_IMAGES), size).mean(0, keepdim=True)
        return _match_channels(mean, channels).expand(shape).clone()
    if method == "kmeans":
        from sklearn.cluster import KMeans

        cache = {} if cache is None else cache
        if (n, tuple(size)) not in cache:
            images = _resize(sample_images(KMEANS_IMAGES_PER_CLUSTER * n), size)
            if images.shape[0] < n:
                raise ConfigError(f"model.{key}: 'kmeans' needs at least {n} training images")
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
            # Best of 10 starts: one unlucky local minimum can merge two classes into one sprite.
            km = KMeans(n_clusters=n, n_init=10, random_state=seed).fit(images.flatten(1).double().numpy())
            cache[(n, tuple(size))] = torch.from_numpy(km.cluster_centers_).float().view(n, *images.shape[1:])
        return _match_channels(cache[(n, tuple(size))], channels).clone()
    raise ConfigError(f"model.{key}: unknown initialisation {method!r}")


def _match_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """Masks take the grey level of an image; appearances keep its colours."""
    if images.shape[1] == channels:
        return images
    if channels == 1:
        return images.mean(1, keepdim=True)
    return images.expand(-1, channels, -1, -1)
