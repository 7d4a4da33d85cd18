"""The learned selection's part of a training forward (docs/method.md §1.8).

Which sprite each layer draws, from the head alone or by rendering and comparing its
shortlist, and the gradient carrier through which the head learns from the composite. It
lives here so that the model's forward reads as DTI-Sprites with one hook, and the
selection's rendering glue sits beside the selection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .learned_selection import carrier_sprites
from .selection import greedy_select

if TYPE_CHECKING:
    from .sprites_model import DTISprites


def learned_choice(
    model: DTISprites,
    betas: dict,
    fixed_betas: dict,
    noise: torch.Tensor | None,
    stack: torch.Tensor,
    backgrounds: torch.Tensor | None,
    occlusion: torch.Tensor,
    images: torch.Tensor,
):
    """Chosen sprites (L, B), the head's objective, and the carrier: the colour and mask
    changes (L, B, C|1, H, W) to add to the drawn layers, or None. fixed_betas are betas
    detached: what candidates are rendered with when only the choice learns from them."""
    selector = model.selector
    if selector.shortlist_size:  # a few proposed candidates rendered and compared
        idx, penalty = _shortlist_choice(
            model, betas["selection"], fixed_betas, noise, stack, backgrounds, occlusion, images
        )
        return idx, penalty, None
    idx, carrier_weights, penalty = selector.choose(betas["selection"], not model.sprites_frozen)
    carrier = None
    if carrier_weights is not None:  # no candidate rendered: the gradient rides on a carrier
        carrier = _render_carrier(model, fixed_betas, stack, idx, carrier_weights)
    return idx, penalty, carrier


def _shortlist_choice(model, logits, fixed_betas, noise, stack, backgrounds, occlusion, images):
    """The head's shortlist rendered and compared as greedy selection compares all
    candidates: chosen sprites (L, B) and the head's objective."""
    with torch.no_grad():
        shortlist = model.selector.shortlist(logits, not model.sprites_frozen)  # (L, k, B)
        cand_colors, cand_masks = model.render_sprites(fixed_betas, shortlist, noise, stack.detach())
        extra_cost = None
        if model.add_empty_sprite and not model.sprites_frozen:
            extra_cost = (shortlist != model.K).float() * model.lambda_empty_sprite
        bkg = None if backgrounds is None else backgrounds[0].detach()
        local = greedy_select(cand_colors, cand_masks, bkg, occlusion.detach(), images, model.greedy_iter, extra_cost)
        idx = shortlist.gather(1, local[:, None]).squeeze(1)  # (L, B)
    return idx, model.selector.learn_choice(logits, shortlist, local, idx)


def _render_carrier(model, fixed_betas, stack, idx, carrier_weights):
    """Colour and mask changes (L, B, C|1, H, W), zero in value: the carrier sprites drawn
    with the chosen sprites' transformations, held fixed."""
    sprites = carrier_sprites(stack.detach(), idx, carrier_weights).flatten(0, 1)  # (L*B, C+2, h, w)
    colors, masks = model.render_sprites(fixed_betas, idx.unsqueeze(1), None, sprites=sprites)
    colors, masks = colors[:, 0], masks[:, 0]
    return colors - colors.detach(), masks - masks.detach()
