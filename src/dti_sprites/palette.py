"""Colours of labels, one table for every picture: sprite k has the same colour in the
semantic segmentations, the decompose previews and the sprite-proportion curves.

Label 0 is the background (black); label l >= 1 is object layer l or sprite l - 1.
"""

import colorsys

import torch

GOLDEN = 0.618033988749895  # hue step that keeps any prefix of the palette spread around the wheel


def label_palette(n: int) -> torch.Tensor:
    """n distinct colours (n, 3) in [0, 1]; label 0 is black (background)."""
    colours = [(0.0, 0.0, 0.0)]
    for i in range(1, n):
        hue = (i * GOLDEN) % 1.0
        value = 1.0 if i % 2 else 0.75  # alternate brightness so neighbours in hue still differ
        colours.append(colorsys.hsv_to_rgb(hue, 0.85, value))
    return torch.tensor(colours[:n], dtype=torch.float32)


def colorize(labels: torch.Tensor, n_labels: int) -> torch.Tensor:
    """Label maps (B, H, W) -> colour images (B, 3, H, W)."""
    palette = label_palette(max(n_labels, int(labels.max()) + 1))
    return palette[labels.cpu().long()].permute(0, 3, 1, 2)


def sprite_colour(k: int) -> tuple[float, float, float]:
    """The colour of sprite k (semantic label k + 1) as an RGB triple in [0, 1]; a label's
    colour does not depend on how many labels there are."""
    return tuple(label_palette(k + 2)[k + 1].tolist())
