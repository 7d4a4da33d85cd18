"""Dead-layer restart: an object layer that no longer explains anything gets a new start.

What we saw on the Tetrominoes demo (seeds 2, 4 and 5 of 5): early in training, while the
encoder cannot yet tell where the objects are, the front layer occludes objects that the
layers behind explain, and its position head throws its sprite off the image (translations of
-6 and -20, or a scale factor of several hundred) or paints it black. Off the image,
zero-padded sampling gives the layer zero mask and zero gradient: nothing brings it back, the
run explains three objects with two layers, and sprites learn two objects at once.

The check, every `check_cluster_interval` iterations: the mean drawn mask of each object layer
over that window (over the images where it drew a sprite rather than the empty one) against
the mean of all layers. A layer below `model.dead_layer_threshold` times that mean moves
behind the other layers, and every head that places or colours it (its layer-transformer
copy, its sprite-transformer copies, its learned-selection logits) restarts at the identity
or at uniform logits: last linear layer zeroed as at initialisation, first moments cleared.
Behind the others it shows only where the layers in front are transparent, so it is drawn
towards what they leave unexplained instead of being pushed off for hiding it.

Tried and dropped: restarting in place, in front (on seed 5 it was pushed off again within
50 iterations, 14 times in 800); judging a layer by how much its removal raises the loss (a
layer just restarted behind a layer that covers the image raises nothing, so it was restarted
again at every check, from iteration 100 to past 1,000).
`dead_layer_threshold: null` keeps the paper's behaviour (no check).
"""

import torch

from ..model.heads import HeadBank
from ..model.optimizer_rows import row_moments


def layer_areas(
    masks: torch.Tensor, sprite_idx: torch.Tensor, empty_index: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per object layer: summed mean drawn mask, and how many images it covers. No host sync.

    masks (L, B, 1, H, W) of the object layers; sprite_idx (L, B); images that chose the empty
    sprite (index empty_index) are left out: drawing nothing is then the selection's choice.
    """
    area = masks.detach().flatten(2).mean(2)  # (L, B)
    drawn = torch.ones_like(area) if empty_index is None else (sprite_idx != empty_index).to(area.dtype)
    return (area * drawn).sum(1), drawn.sum(1)


def dead_layers(area_sum: torch.Tensor, drawn: torch.Tensor, threshold: float) -> list[int]:
    """Layers whose mean drawn mask is below threshold times the mean over the layers that drew."""
    mean_area = area_sum / drawn.clamp(min=1)
    seen = drawn > 0
    if int(seen.sum()) < 2:  # nothing to compare with
        return []
    reference = float(mean_area[seen].mean())
    return [l for l in range(mean_area.shape[0]) if bool(seen[l]) and float(mean_area[l]) < threshold * reference]


def layer_head_rows(model) -> list[tuple[HeadBank, int]]:
    """Every head bank that holds per-layer copies, with how many consecutive rows each layer owns."""
    rows = []
    if model.layer_transformer is not None:
        rows += [(bank, 1) for bank in model.layer_transformer.heads if bank is not None]
    rows += [(bank, model.K) for bank in model.sprite_transformer.heads if bank is not None]  # row l*K + k
    if model.selector is not None:  # the learned selection's logits: a restarted layer starts from uniform
        rows.append((model.selector.head, 1))
    return rows


@torch.no_grad()
def restart_layers(model, dead: list[int], optimizer: torch.optim.Optimizer | None = None) -> list[int]:
    """Move the dead layers behind the others and set their heads back to the identity.

    Returns the new order: new layer i is old layer order[i]. The live layers keep their
    relative order and what they learned (rows of every head tensor and of its optimiser
    moments are permuted together: each keeps its weights and its Adam state).
    Behind the others a restarted layer shows only where the layers in front are transparent:
    it is drawn towards what they leave unexplained instead of being pushed off for hiding it.
    """
    order = list(dead) + [l for l in range(model.L) if l not in dead]
    for bank, per_layer in layer_head_rows(model):
        rows = torch.cat([torch.arange(per_layer) + l * per_layer for l in order])
        for tensor in list(bank.parameters()) + list(bank.buffers()):
            index = rows.to(tensor.device)
            tensor.copy_(tensor[index])
            for _, moment in row_moments(optimizer, tensor):
                moment.copy_(moment[index])
        n_reset = len(dead) * per_layer
        for tensor in (bank.last_weight, bank.last_bias):
            tensor[:n_reset] = 0
            for name, moment in row_moments(optimizer, tensor):
                if name == "exp_avg":
                    moment[:n_reset] = 0  # no direction remembered from the dead placement
                else:
                    # Second moments as the live rows have them. Zeroed, Adam's next steps would be
                    # 3 to 6 times the learning rate for a hundred iterations and throw it off again.
                    live = moment[n_reset:].reshape(-1, per_layer, *moment.shape[1:]).mean(0)
                    moment[:n_reset] = live.repeat(len(dead), *([1] * (moment.dim() - 1)))
    return order
