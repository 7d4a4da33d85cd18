"""Score of an unlabelled collection: the mean per-image reconstruction error only."""

import torch

from . import EVALUATORS
from .batches import eval_batches


@EVALUATORS.register("unlabelled")
def evaluate_unlabelled(
    model,
    dataset,
    device,
    batch_size: int = 32,
    eval_semantic: bool = True,
    eval_with_bkg: bool = True,
    n_classes: int | None = None,
    progress: bool = False,
) -> dict:
    """No labels: the mean reconstruction loss only."""
    losses = [out.loss.cpu() for out, _ in eval_batches(model, dataset, device, batch_size, progress)]
    return {"loss": float(torch.cat(losses).mean())}
