"""Layered composition with occlusion (docs/method.md §1.6).

Layout: layers first. colours (L', B, C, H, W), masks (L', B, 1, H, W), occlusion
δ (B, L', L') with δ[b, j, k] = "layer j is in front of layer k". L' counts the background,
when there is one, as layer 0 with a mask of ones. The image is

    x̂ = Σ_k m_k a_k Π_{j≠k} (1 − δ[j,k] m_j).
"""

import torch


def fixed_occlusion(n_layers: int, batch: int, device=None) -> torch.Tensor:
    """Later layers in front: δ[j, k] = 1 if j > k. (B, L', L')."""
    return torch.ones(n_layers, n_layers, device=device).tril(-1).expand(batch, -1, -1)


def predicted_occlusion(pair_logits: torch.Tensor, n_objects: int, has_background: bool) -> torch.Tensor:
    """Occlusion from L(L−1)/2 logits per image (B, P) -> δ (B, L', L').

    The strictly lower triangle among object layers is sigmoid(logits), the upper triangle
    its complement, so each pair is ordered one way or the other; the background (layer 0)
    is behind everything.
    """
    B = pair_logits.shape[0]
    rows, cols = torch.tril_indices(n_objects, n_objects, offset=-1, device=pair_logits.device)
    lower = pair_logits.new_zeros(B, n_objects, n_objects)
    lower[:, rows, cols] = torch.sigmoid(pair_logits)
    upper = (1 - lower).transpose(1, 2).triu(1)
    objects = lower + upper  # (B, L, L), zero diagonal
    if not has_background:
        return objects
    delta = pair_logits.new_zeros(B, n_objects + 1, n_objects + 1)
    delta[:, 1:, 1:] = objects
    delta[:, 1:, 0] = 1
    return delta


def transmittance(masks: torch.Tensor, occlusion: torch.Tensor | None = None) -> torch.Tensor:
    """How much of each layer the layers in front let through, T_k = Π_{j≠k} (1 − δ[j,k] m_j):
    (L', B, 1, H, W). m_k T_k is what layer k shows in the image: its weight in the composite,
    and what the evaluation's front-most layer compares. occlusion None: the fixed order."""
    if occlusion is None:
        # Later layers in front: T_k = Π_{j>k} (1 − m_j), a reversed cumprod.
        clear = (1 - masks).flip(0).cumprod(0).flip(0)  # (L', B, 1, H, W): Π_{j>=k}
        return torch.cat([clear[1:], torch.ones_like(clear[:1])], 0)  # Π_{j>k}
    # One occluder j at a time, G_j[k] = 1 − δ[j, k] m_j over all k at once (δ[k, k] = 0).
    # Not .prod over a stacked (L', L', B, 1, H, W): the same bits forward, but prod's backward
    # takes a slow path wherever a factor is 0 (a mask of exactly 1 in front), 6x slower
    # at the clevr6 shape.
    delta = occlusion.permute(1, 2, 0)[..., None, None, None]  # (L', L', B, 1, 1, 1): δ[j, k]
    through = 1 - delta[0] * masks[0]
    for j in range(1, masks.shape[0]):
        through = through * (1 - delta[j] * masks[j])
    return through


def layered_composite(
    colors: torch.Tensor,
    masks: torch.Tensor,
    occlusion: torch.Tensor | None = None,
    through: torch.Tensor | None = None,
) -> torch.Tensor:
    """Compose layers into an image (B, C, H, W); occlusion None means fixed order. through:
    transmittance(masks, occlusion), when the caller needs it too."""
    through = transmittance(masks, occlusion) if through is None else through
    return (masks * colors * through).sum(0)


def blend_terms(colors: torch.Tensor, masks: torch.Tensor, occlusion: torch.Tensor, layer: int):
    """What stays fixed while the content of `layer` is varied.

    Returns (A, T, D) such that putting colour a and mask m into `layer` composes to
    x̂ = A + m (a T − D): A is the image without the layer, T its transmittance through the
    layers in front, D what it hides of the others. Each candidate then costs one blend
    instead of a full composition. A, D (B, C, H, W); T (B, 1, H, W).
    """
    in_front = occlusion[:, :, layer].T[..., None, None, None]  # (L', B, 1, 1, 1): δ[j, layer]
    through = (1 - in_front * masks).prod(0)  # (B, 1, H, W); δ[layer, layer] = 0
    without = masks.clone()
    without[layer] = 0  # the varied layer is absent from A and occludes nobody there
    others = without * colors * transmittance(without, occlusion)  # (L', B, C, H, W): P_k, P_layer = 0
    hidden_weight = occlusion[:, layer].T[..., None, None, None]  # (L', B, 1, 1, 1): δ[layer, k]
    return others.sum(0), through, (hidden_weight * others).sum(0)
