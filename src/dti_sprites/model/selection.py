"""Choosing the sprite of each layer (docs/method.md §1.8).

Candidates arrive rendered for every layer at once: colours (L, K', B, C, H, W) and masks
(L, K', B, 1, H, W), K' = K sprites (+ the empty one). Both selections score all K'
candidates of a layer in one batched computation; they run without gradient, and the model
then renders only the chosen sprites with gradient, which gives the same loss and gradient
as differentiating the minimum over candidates.
"""

import functools
import itertools

import torch

from .candidate_windows import Windows
from .composition import blend_terms, layered_composite


def _per_image_error(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over (C, H, W): (..., B, C, H, W) -> (..., B)."""
    return (recon - target).square().mean((-3, -2, -1))


def greedy_select(
    cand_colors: torch.Tensor,
    cand_masks: torch.Tensor,
    background: torch.Tensor | None,
    occlusion: torch.Tensor,
    target: torch.Tensor,
    n_iter: int,
    extra_cost: torch.Tensor | None = None,
    allowed: torch.Tensor | None = None,
    windows: Windows | None = None,
) -> torch.Tensor:
    """Layer-by-layer coordinate descent from the background alone; returns indices (L, B).

    windows: the candidates cover only these windows of the canvas (candidate_windows.py).
    Outside its window a candidate leaves the image as the layer's absence does, the same
    for every candidate, so the errors compared are those inside the window.

    extra_cost (K',), or (L, K', B) when the candidates differ by layer and image (a learned
    shortlist), is added to each candidate's error (the empty-sprite prior); allowed (K',)
    bool removes candidates (the empty sprite while sprites are frozen).
    occlusion (B, L', L') includes the background as layer 0 when there is one.
    """
    L, _, B, C = cand_colors.shape[:4]
    H, W = target.shape[-2:]
    offset = 0 if background is None else 1
    colors = cand_colors.new_zeros(L + offset, B, C, H, W)
    masks = cand_masks.new_zeros(L + offset, B, 1, H, W)
    if background is not None:
        colors[0] = background
        masks[0] = 1
    batch = torch.arange(B, device=target.device)
    chosen = torch.zeros(L, B, dtype=torch.long, device=target.device)
    n_values = C * H * W
    for _ in range(n_iter):
        for l in range(L):
            A, T, D = blend_terms(colors, masks, occlusion, l + offset)
            gap = A - target
            if windows is not None:
                gap, T, D = (windows.crop(t, l) for t in (gap, T, D))
            # recon - target = (A - target) + m (a T - D), in two fused passes over the (K', B, C, H, W)
            # candidates instead of five, and the squared error summed in a third.
            residual = torch.addcmul(gap, cand_masks[l], torch.addcmul(-D, cand_colors[l], T))
            error = torch.linalg.vector_norm(residual, dim=(-3, -2, -1)).square() / n_values  # (K', B)
            if extra_cost is not None:
                error = error + (extra_cost[l] if extra_cost.dim() == 3 else extra_cost[:, None])
            if allowed is not None:
                error = error.masked_fill(~allowed[:, None], float("inf"))
            chosen[l] = error.argmin(0)
            picked_colors, picked_masks = cand_colors[l, chosen[l], batch], cand_masks[l, chosen[l], batch]
            if windows is not None:
                picked_colors, picked_masks = windows.paste(picked_colors, l), windows.paste(picked_masks, l)
            colors[l + offset] = picked_colors
            masks[l + offset] = picked_masks
    return chosen


@functools.lru_cache(maxsize=8)
def _combinations(K: int, L: int, M: int, device: torch.device) -> torch.Tensor:
    """Every (sprite per layer [, background]) tuple, built once per shape and device: a
    fresh host-to-GPU copy at every step would make the host wait for the GPU."""
    combos = itertools.product(*([range(K)] * L + ([range(M)] if M else [])))
    return torch.tensor(list(combos), dtype=torch.long, device=device)


def exhaustive_select(
    cand_colors: torch.Tensor,
    cand_masks: torch.Tensor,
    backgrounds: torch.Tensor | None,
    occlusion: torch.Tensor | None,
    target: torch.Tensor,
    chunk: int = 64,
):
    """Try all K'^L (x M) combinations; returns (indices (L, B), background index (B,) or None).

    backgrounds (M, B, C, H, W). occlusion None means fixed order.
    """
    L, K, B, C, H, W = cand_colors.shape
    M = 0 if backgrounds is None else backgrounds.shape[0]
    combos = _combinations(K, L, M, target.device)  # (n, L [+1])
    errors = []
    for part in combos.split(chunk):
        n = part.shape[0]
        layers = [cand_colors[l, part[:, l]] for l in range(L)]  # L x (n, B, C, H, W)
        layer_masks = [cand_masks[l, part[:, l]] for l in range(L)]
        if M:
            layers.insert(0, backgrounds[part[:, L]])
            layer_masks.insert(0, torch.ones_like(layer_masks[0]))
        colors = torch.stack(layers).flatten(1, 2)  # (L', n*B, C, H, W)
        masks = torch.stack(layer_masks).flatten(1, 2)
        occ = None if occlusion is None else occlusion.repeat(n, 1, 1)  # (n*B, L', L')
        recon = layered_composite(colors, masks, occ).view(n, B, C, H, W)
        errors.append(_per_image_error(recon, target))
    best = torch.cat(errors).argmin(0)  # (B,)
    choice = combos[best]  # (B, L [+1])
    return choice[:, :L].T.contiguous(), (choice[:, L] if M else None)
