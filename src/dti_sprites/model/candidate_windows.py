"""Candidate sprites drawn only over the window where they can land, when a layer places its
sprites by scale and translation alone (the `position` module, as in `color_position`).

Why: greedy selection compares all K' candidates of every layer (selection.py), and on a CPU
drawing them with grid_sample over the whole canvas, then comparing them there, was the
largest part of a demo step. A map without rotation samples rows and columns independently,
so the bilinear warp is two small matrix products, one per axis, with the weights
grid_sample uses; and a sprite drawn at about half the canvas covers about a quarter of it.
Outside its window a candidate's colours and mask are 0, so every candidate leaves the image
the same there, and selection compares them inside the window only.

Layout: as sprite_rendering.py, the window (h', w') in place of the canvas (H, W): colours
(L, K', B, C, h', w'), masks (L, K', B, 1, h', w'). One window size serves every (layer,
image); each has its own top-left corner on the canvas.
"""

from dataclasses import dataclass, field

import torch

from .transform_base import pixel_centres


def axis_weights(scale: torch.Tensor, shift: torch.Tensor, n_out: int, n_in: int) -> torch.Tensor:
    """Bilinear weights of the 1-D map input = scale * q + shift along one axis, (G,) each ->
    (G, n_out, n_in): what grid_sample (normalised coordinates, align_corners=False, zeros
    outside the input) blends for each output pixel, at most two non-zeros per row."""
    q = pixel_centres(n_out, scale.device, scale.dtype)  # (n_out,)
    source = ((scale[:, None] * q + shift[:, None] + 1) * n_in - 1) / 2  # (G, n_out): input pixel coordinate
    pixels = torch.arange(n_in, device=scale.device, dtype=scale.dtype)
    return (1 - (source[:, :, None] - pixels).abs()).clamp_min(0)  # the tent 1 - |distance|, (G, n_out, n_in)


def covered_span(weights: torch.Tensor) -> tuple[torch.Tensor, int]:
    """weights (G, n_out, n_in) -> the first output pixel of each window (G,) and the window
    size: the widest run of output pixels any input reaches, at least 1, kept on the canvas.

    The size is read on the host (a wait for a GPU, so the windows are for CPU steps)."""
    n_out = weights.shape[1]
    covered = weights.sum(2) > 0  # (G, n_out)
    pixel = torch.arange(n_out, device=weights.device)
    first = torch.where(covered, pixel, n_out).amin(1)
    last = torch.where(covered, pixel, -1).amax(1)
    size = max(int((last - first + 1).max()), 1)
    return first.clamp(max=n_out - size), size


def window_rows(weights: torch.Tensor, first: torch.Tensor, size: int) -> torch.Tensor:
    """The rows first .. first + size - 1 of weights (G, n_out, n_in) -> (G, size, n_in)."""
    rows = first[:, None] + torch.arange(size, device=first.device)  # (G, size)
    return weights.gather(1, rows[:, :, None].expand(-1, -1, weights.shape[2]))


@dataclass
class Windows:
    """Where each (layer, image) window lies on the canvas: top and left (L, B), in pixels."""

    top: torch.Tensor
    left: torch.Tensor
    size: tuple[int, int]
    canvas: tuple[int, int]
    # Canvas pixel of each window pixel, (L, B, h' * w'): selection cuts and pastes by it per layer.
    flat_index: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self):
        (height, width), W = self.size, self.canvas[1]
        rows = self.top[..., None] + torch.arange(height, device=self.top.device)  # (L, B, h')
        cols = self.left[..., None] + torch.arange(width, device=self.top.device)  # (L, B, w')
        self.flat_index = (rows[..., :, None] * W + cols[..., None, :]).flatten(2)

    def crop(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        """The window of `layer` in each image: x (B, Ch, H, W) -> (B, Ch, h', w')."""
        index = self.flat_index[layer, :, None].expand(-1, x.shape[1], -1)  # (B, Ch, h' w')
        return x.flatten(2).gather(2, index).view(*x.shape[:2], *self.size)

    def paste(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        """x (B, Ch, h', w') on a canvas of zeros at the windows of `layer` -> (B, Ch, H, W)."""
        B, channels = x.shape[:2]
        index = self.flat_index[layer, :, None].expand(-1, channels, -1)
        canvas = x.new_zeros(B, channels, self.canvas[0] * self.canvas[1])
        return canvas.scatter_(2, index, x.flatten(2)).view(B, channels, *self.canvas)

    def crop_all(self, x: torch.Tensor) -> torch.Tensor:
        """The same N images x (N, Ch, H, W) cut at every window -> (L, N, B, Ch, h', w')."""
        L, B = self.top.shape
        N, channels = x.shape[:2]
        shared = x.reshape(1, N * channels, *self.canvas).expand(B, -1, -1, -1)
        cut = [self.crop(shared, layer).view(B, N, channels, *self.size) for layer in range(L)]
        return torch.stack(cut).transpose(1, 2)
