"""Scores of the cosegmentation benchmarks (docs/method.md §3): a foreground mask per image.

A pixel is foreground when the chosen sprite's transformed mask is > 0.5 (any object layer's,
with several). Counts are accumulated over every pixel of the set. An unsupervised model may
explain the object with the background and the rest with the sprite, so both assignments
(predicted foreground = true foreground, or = true background) are scored and the one with the
higher pixel accuracy is kept; `swapped` says which (1.0 when swapped). `acc` is the pixel
accuracy and `iou` the foreground IoU under it. `loss` is the mean per-image reconstruction error.
"""

import numpy as np
import torch

from . import EVALUATORS
from .batches import eval_batches
from .metrics import contingency


def foreground_scores(counts: np.ndarray) -> dict[str, float]:
    """Accuracy and foreground IoU from pixel counts[true, pred] (2, 2), the better assignment."""
    best = None
    for swapped, table in ((0.0, counts), (1.0, counts[:, ::-1])):
        total = table.sum()
        acc = (table[0, 0] + table[1, 1]) / total if total else float("nan")
        union = table[1, 1] + table[0, 1] + table[1, 0]
        iou = table[1, 1] / union if union else float("nan")
        if best is None or acc > best["acc"]:
            best = {"acc": float(acc), "iou": float(iou), "swapped": swapped}
    return best


@EVALUATORS.register("cosegmentation")
def evaluate_cosegmentation(
    model,
    dataset,
    device,
    batch_size: int = 32,
    eval_semantic: bool = True,
    eval_with_bkg: bool = True,
    n_classes: int | None = None,
    progress: bool = False,
) -> dict:
    """Foreground = transformed mask of a chosen sprite > 0.5; masks are the second item."""
    losses, counts = [], np.zeros((2, 2), dtype=np.int64)
    for out, (_, mask) in eval_batches(model, dataset, device, batch_size, progress):
        losses.append(out.loss.cpu())
        objects = out.object_masks[:, :, 0]  # (L, B, H, W)
        fg = (objects > 0.5).any(0).cpu().long()  # (B, H, W)
        counts += contingency((mask > 0).long().flatten().numpy(), fg.flatten().numpy(), 2, 2)
    scores = {"loss": float(torch.cat(losses).mean())}
    scores.update(foreground_scores(counts))
    return scores
