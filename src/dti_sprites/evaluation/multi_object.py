"""Scores of a trained model on a labelled multi-object dataset (docs/method.md §3).

Predicted instance labels come from composing the layer index instead of colours, with
hard masks (> 0.5) and hard occlusion (> 0.5): each pixel gets the front-most object layer
covering it (1..L), 0 if none. Semantic labels do the same with sprite index + 1.

`eval_with_bkg: false` gives the pixels left to the background to the object layer of
closest colour (`fill_background`) before `ari` and the semantic scores. Whatever that
setting, `ari_fg` scores the plain labels (the standard ARI-FG) and `ari_fg_filled` the
filled ones: the ARI-FG of the original release, which the paper reports (docs/method.md §3).
"""

import torch

from ..model.composition import transmittance
from ..model.decomposition import Decomposition
from . import EVALUATORS
from .batches import eval_batches
from .metrics import ConfusionMatrix, mean_ari, semantic_scores


def front_layer(decomposition: Decomposition, images: torch.Tensor | None = None) -> torch.Tensor:
    """Index (1..L) of the front-most object layer covering each pixel, 0 if none: (B, H, W).

    With `images` given, pixels left to the background are instead given to the object layer
    whose colour is closest to the image there (`eval_with_bkg: false`).
    """
    masks = (decomposition.masks > 0.5).float()  # (L', B, 1, H, W)
    visible = masks * transmittance(masks, (decomposition.occlusion > 0.5).float())  # (L', B, 1, H, W)
    objects = visible[decomposition.first_object :, :, 0]  # (L, B, H, W)
    label = objects.argmax(0) + 1
    label = torch.where(objects.amax(0) > 0, label, torch.zeros_like(label))
    return label if images is None else fill_background(label, decomposition, images)


def fill_background(label: torch.Tensor, decomposition: Decomposition, images: torch.Tensor) -> torch.Tensor:
    """Instance labels (B, H, W) with every 0 (no object layer covers it) replaced by the object
    layer whose colour, mask aside, is closest to the image there: (B, H, W) in 1..L.

    The original's `eval_with_bkg: false`: a hole in a predicted object, or an object the masks
    miss, still counts towards the layer that paints it.
    """
    colors = decomposition.object_colors  # (L, B, C, H, W)
    closest = (colors - images.unsqueeze(0)).square().sum(2).argmin(0) + 1  # (B, H, W)
    return torch.where(label == 0, closest, label)


def semantic_labels(decomposition: Decomposition, instance: torch.Tensor) -> torch.Tensor:
    """Sprite index + 1 of the layer each pixel belongs to, 0 for background: (B, H, W)."""
    sprite_of_layer = torch.cat([torch.full_like(decomposition.sprite_idx[:1], -1), decomposition.sprite_idx])
    table = sprite_of_layer.T  # (B, L+1); row 0 is the background
    return table.gather(1, instance.flatten(1)).view_as(instance) + 1


@EVALUATORS.register("multi_object")
@torch.no_grad()
def evaluate_multi_object(
    model,
    dataset,
    device,
    batch_size: int = 32,
    eval_semantic: bool = True,
    eval_with_bkg: bool = True,
    n_classes: int | None = None,
    progress: bool = False,
) -> dict:
    """ARI / ARI-FG per image (averaged) and, optionally, semantic scores after matching."""
    true_inst, plain_inst, filled_inst, losses = [], [], [], []
    confusion = ConfusionMatrix(n_classes, model.n_candidates + 1) if eval_semantic and n_classes else None
    for out, (images, inst, sem) in eval_batches(model, dataset, device, batch_size, progress):
        images = images.to(device)
        plain = front_layer(out)
        filled = fill_background(plain, out, images)
        true_inst.append(inst)
        plain_inst.append(plain.cpu())
        filled_inst.append(filled.cpu())
        losses.append(out.loss.cpu())
        if confusion is not None:
            confusion.update(sem, semantic_labels(out, plain if eval_with_bkg else filled).cpu())
    scores = {"loss": float(torch.cat(losses).mean())}
    true_inst, plain_inst, filled_inst = torch.cat(true_inst), torch.cat(plain_inst), torch.cat(filled_inst)
    scores["ari"] = mean_ari(true_inst, plain_inst if eval_with_bkg else filled_inst)
    scores["ari_fg"] = mean_ari(true_inst, plain_inst, foreground_only=True)
    scores["ari_fg_filled"] = mean_ari(true_inst, filled_inst, foreground_only=True)
    if confusion is not None:
        scores.update(semantic_scores(confusion.matrix))
    return scores
