"""Composition, occlusion and sprite selection on small analytic cases."""

import torch

from dti_sprites.model.composition import blend_terms, fixed_occlusion, layered_composite, predicted_occlusion
from dti_sprites.model.selection import exhaustive_select, greedy_select


def square(H, W, top, left, size):
    m = torch.zeros(1, H, W)
    m[:, top : top + size, left : left + size] = 1
    return m


def test_fixed_order_puts_later_layers_in_front():
    H = W = 6
    bg = torch.full((1, 3, H, W), 0.2)
    red = torch.tensor([1.0, 0, 0]).view(1, 3, 1, 1).expand(1, 3, H, W)
    blue = torch.tensor([0, 0, 1.0]).view(1, 3, 1, 1).expand(1, 3, H, W)
    colors = torch.stack([bg, red, blue])  # (3, 1, 3, H, W)
    masks = torch.stack([torch.ones(1, 1, H, W), square(H, W, 0, 0, 4)[None], square(H, W, 2, 2, 4)[None]])
    out = layered_composite(colors, masks)[0]
    assert torch.allclose(out[:, 0, 0], torch.tensor([1.0, 0, 0]))  # red only
    assert torch.allclose(out[:, 3, 3], torch.tensor([0, 0, 1.0]))  # overlap: blue (later) wins
    assert torch.allclose(out[:, 5, 0], torch.tensor([0.2, 0.2, 0.2]))  # background
    general = layered_composite(colors, masks, fixed_occlusion(3, 1))
    assert torch.allclose(out, general[0])


def test_predicted_occlusion_can_reverse_the_order():
    H = W = 6
    colors = torch.stack(
        [
            torch.zeros(1, 3, H, W),
            torch.ones(1, 3, H, W) * torch.tensor([1.0, 0, 0]).view(1, 3, 1, 1),
            torch.ones(1, 3, H, W) * torch.tensor([0, 0, 1.0]).view(1, 3, 1, 1),
        ]
    )
    masks = torch.stack([torch.ones(1, 1, H, W), square(H, W, 0, 0, 4)[None], square(H, W, 2, 2, 4)[None]])
    # One object pair; logit -> δ[2,1] (layer 2 in front of layer 1). Large negative: layer 1 in front.
    delta = predicted_occlusion(torch.tensor([[-30.0]]), n_objects=2, has_background=True)
    assert torch.allclose(delta[0], torch.tensor([[0, 0, 0], [1, 0, 1], [1, 0, 0.0]]), atol=1e-6)
    out = layered_composite(colors, masks, delta)[0]
    assert torch.allclose(out[:, 3, 3], torch.tensor([1.0, 0, 0]), atol=1e-6)  # red now in front
    half = predicted_occlusion(torch.zeros(1, 1), 2, True)
    assert torch.allclose(half[0, 1, 2], torch.tensor(0.5)) and torch.allclose(half[0, 2, 1], torch.tensor(0.5))


def test_blend_terms_reproduce_full_composition():
    torch.manual_seed(0)
    Lp, B, C, H, W = 4, 3, 3, 5, 5
    colors, masks = torch.rand(Lp, B, C, H, W), torch.rand(Lp, B, 1, H, W)
    masks[0] = 1
    delta = predicted_occlusion(torch.randn(B, 3), n_objects=3, has_background=True)
    new_color, new_mask = torch.rand(B, C, H, W), torch.rand(B, 1, H, W)
    for layer in (1, 2, 3):
        A, T, D = blend_terms(colors, masks, delta, layer)
        replaced_c, replaced_m = colors.clone(), masks.clone()
        replaced_c[layer], replaced_m[layer] = new_color, new_mask
        expected = layered_composite(replaced_c, replaced_m, delta)
        assert torch.allclose(A + new_mask * (new_color * T - D), expected, atol=1e-6)


def _planted_scene(seed=0):
    """Three layers, five candidate sprites per layer (distinct flat-colour squares)."""
    torch.manual_seed(seed)
    L, K, B, C, H, W = 3, 5, 4, 3, 12, 12
    cand_colors = torch.rand(L, K, 1, C, 1, 1).expand(L, K, B, C, H, W).clone()
    cand_masks = torch.zeros(L, K, B, 1, H, W)
    for l in range(L):
        for k in range(K):
            cand_masks[l, k, :, :, l * 4 : l * 4 + 3, k * 2 : k * 2 + 3] = 1
    planted = torch.randint(K, (L, B))
    bg = torch.full((B, C, H, W), 0.1)
    colors = torch.cat([bg[None], torch.stack([cand_colors[l, planted[l], torch.arange(B)] for l in range(L)])])
    masks = torch.cat(
        [torch.ones(1, B, 1, H, W), torch.stack([cand_masks[l, planted[l], torch.arange(B)] for l in range(L)])]
    )
    target = layered_composite(colors, masks)
    return cand_colors, cand_masks, bg, target, planted


def test_greedy_recovers_planted_sprites():
    cand_colors, cand_masks, bg, target, planted = _planted_scene()
    occlusion = fixed_occlusion(4, target.shape[0])
    chosen = greedy_select(cand_colors, cand_masks, bg, occlusion, target, n_iter=2)
    assert torch.equal(chosen, planted)


def test_exhaustive_recovers_planted_combination():
    cand_colors, cand_masks, bg, target, planted = _planted_scene(seed=1)
    chosen, bkg_idx = exhaustive_select(cand_colors, cand_masks, bg[None], None, target, chunk=17)
    assert torch.equal(chosen, planted)
    assert torch.equal(bkg_idx, torch.zeros(target.shape[0], dtype=torch.long))


def test_greedy_and_exhaustive_agree_with_one_layer():
    torch.manual_seed(3)
    K, B, C, H, W = 6, 8, 3, 7, 7
    cand_colors, cand_masks = torch.rand(1, K, B, C, H, W), torch.rand(1, K, B, 1, H, W)
    bg, target = torch.rand(B, C, H, W), torch.rand(B, C, H, W)
    greedy = greedy_select(cand_colors, cand_masks, bg, fixed_occlusion(2, B), target, n_iter=1)
    exhaustive, _ = exhaustive_select(cand_colors, cand_masks, bg[None], None, target)
    assert torch.equal(greedy, exhaustive)


def test_greedy_extra_cost_and_allowed_mask():
    cand_colors, cand_masks, bg, target, planted = _planted_scene(seed=2)
    B = target.shape[0]
    occlusion = fixed_occlusion(4, B)
    allowed = torch.tensor([True, True, False, True, True])
    chosen = greedy_select(cand_colors, cand_masks, bg, occlusion, target, 1, allowed=allowed)
    assert not (chosen == 2).any()
    cost = torch.tensor([0.0, 0, 0, 0, -10.0])  # a huge bonus makes sprite 4 always win
    chosen = greedy_select(cand_colors, cand_masks, bg, occlusion, target, 1, extra_cost=cost)
    assert (chosen == 4).all()


def test_transmittance_weighs_the_composite_and_the_evaluation_alike():
    """One visibility formula: the composite sums m_k a_k T_k, and the evaluation's front-most
    layer is the largest hard m_k T_k."""
    from dti_sprites.evaluation.multi_object import front_layer
    from dti_sprites.model.composition import transmittance
    from dti_sprites.model.decomposition import Decomposition

    torch.manual_seed(4)
    L, B = 4, 2
    colors, masks = torch.rand(L, B, 3, 5, 5), torch.rand(L, B, 1, 5, 5)
    masks[0] = 1  # the background
    for occlusion in (None, predicted_occlusion(torch.randn(B, 3), n_objects=3, has_background=True)):
        weights = masks * transmittance(masks, occlusion)  # (L, B, 1, H, W)
        assert torch.allclose((weights * colors).sum(0), layered_composite(colors, masks, occlusion), atol=1e-6)
    # The fixed order's reversed cumprod is the product over the fixed occlusion matrix.
    assert torch.allclose(transmittance(masks), transmittance(masks, fixed_occlusion(L, B)), atol=1e-6)
    out = Decomposition(
        recon=colors[0],
        loss=torch.zeros(B),
        sprite_idx=torch.zeros(3, B, dtype=torch.long),
        bkg_idx=torch.zeros(B, dtype=torch.long),
        colors=colors,
        masks=masks,
        occlusion=fixed_occlusion(L, B),
        has_background=True,
    )
    covering = (masks[1:, :, 0] > 0.5).long() * torch.arange(1, L)[:, None, None, None]  # (L-1, B, H, W)
    assert torch.equal(front_layer(out), covering.amax(0))  # fixed order: the last covering layer is in front


def test_transmittance_matches_the_product_over_occluders_with_its_gradient():
    """The occluder-by-occluder product is T_k = Π_j (1 − δ[j,k] m_j) in value and in slope,
    masks of exactly 1 included (where a stacked .prod's backward would divide by zero)."""
    from dti_sprites.model.composition import transmittance

    torch.manual_seed(5)
    L, B = 4, 3
    masks = torch.rand(L, B, 1, 6, 6).mul(1.5).clamp(0, 1)  # about a third exactly 1
    masks[0] = 1  # the background
    logits = torch.randn(B, 3)
    weights = torch.rand(L, B, 1, 6, 6)
    slopes = []
    for product in ("stacked", "occluder by occluder"):
        m, lg = masks.clone().requires_grad_(), logits.clone().requires_grad_()
        delta = predicted_occlusion(lg, n_objects=3, has_background=True)
        if product == "stacked":
            through = (1 - delta.permute(1, 2, 0)[..., None, None, None] * m.unsqueeze(1)).prod(0)
        else:
            through = transmittance(m, delta)
        (through * weights).sum().backward()
        slopes.append((through.detach(), m.grad, lg.grad))
    for reference, ours in zip(*slopes):
        assert torch.allclose(ours, reference, atol=1e-6)
    assert (masks[1:] == 1).any()  # the case that matters was exercised
