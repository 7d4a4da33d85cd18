"""The model: identity at initialisation, the fast selection path, reassignment."""

import pytest
import torch

from dti_sprites.model.composition import layered_composite
from dti_sprites.model.sprites_model import DTISprites, compile_model
from dti_sprites.training.reassign import reassign_empty_clusters

from conftest import small_config


def make_model(img_size=(16, 16), **model):
    torch.manual_seed(0)
    return DTISprites(small_config(model)["model"], img_size, 3)


def test_forward_shapes_and_identity_at_init():
    model = make_model(
        transformation_sequence="identity", transformation_sequence_layer="position", inject_noise=0.0, n_backgrounds=0
    )
    images = torch.rand(5, 3, 16, 16)
    out = model(images)
    assert out.recon.shape == (5, 3, 16, 16) and out.loss.shape == (5,)
    assert out.sprite_idx.shape == (2, 5) and out.bkg_idx is None
    # Heads start at zero: the position module draws each 8x8 sprite at half the canvas, centred.
    mask = out.masks[0, 0, 0]  # (H, W)
    assert mask[4:12, 4:12].min() > 0 and mask[:3].abs().max() == 0 and mask[:, 13:].abs().max() == 0


def test_selection_then_render_equals_minimum_over_candidates():
    """The fast path (select without gradient, render the winner) has the plain path's loss and gradient."""
    model = make_model(n_objects=1, estimate_minimum=False, inject_noise=0.0)
    images = torch.rand(6, 3, 16, 16)
    fast = model(images)
    fast.loss.mean().backward()
    fast_grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad()

    betas = model.predict(model.encoder(images))
    K, B = model.n_candidates, images.shape[0]
    colors, masks = model.render_sprites(betas, torch.arange(K).view(1, K, 1).expand(1, K, B), None)
    bkg = model.render_backgrounds(betas, B)[0]  # (B, C, H, W)
    recon = bkg + masks[0] * (colors[0] - bkg)  # (K, B, C, H, W): every candidate over the background
    errors = (recon - images).square().flatten(2).mean(2)  # (K, B)
    plain_loss = errors.min(0).values
    plain_loss.mean().backward()
    plain_grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    assert torch.equal(errors.argmin(0), fast.sprite_idx[0])
    assert torch.allclose(plain_loss, fast.loss, atol=1e-6)
    assert len(plain_grads) == len(fast_grads)
    for a, b in zip(plain_grads, fast_grads):
        assert torch.allclose(a, b, atol=1e-6)


def test_greedy_fast_path_matches_composition_of_gathered_candidates():
    model = make_model(n_objects=3, pred_occlusion=True, add_empty_sprite=True, lambda_empty_sprite=1e-4)
    images = torch.rand(4, 3, 16, 16)
    torch.manual_seed(5)
    out = model(images)
    torch.manual_seed(5)
    betas = model.predict(model.encoder(images))
    noise = torch.rand(model.n_candidates, 1, 16, 16)
    K, B = model.n_candidates, 4
    colors, masks = model.render_sprites(betas, torch.arange(K).view(1, K, 1).expand(3, K, B), noise)
    batch = torch.arange(B)
    chosen_c = torch.stack([colors[l, out.sprite_idx[l], batch] for l in range(3)])
    chosen_m = torch.stack([masks[l, out.sprite_idx[l], batch] for l in range(3)])
    bkg = model.render_backgrounds(betas, B)[0]
    recon = layered_composite(
        torch.cat([bkg[None], chosen_c]),
        torch.cat([torch.ones_like(chosen_m[:1]), chosen_m]),
        model.occlusion(betas, B, "cpu"),
    )
    assert torch.allclose(recon, out.recon, atol=1e-6)


def test_noise_only_in_training_and_empty_sprite_stays_empty():
    model = make_model(add_empty_sprite=True, estimate_minimum=True)
    images = torch.rand(3, 3, 16, 16)
    model.eval()
    a, b = model(images), model(images)
    assert torch.equal(a.recon, b.recon)
    model.train()
    betas = model.predict(model.encoder(images))
    first = torch.zeros(2, 1, 3, dtype=torch.long)
    _, m1 = model.render_sprites(betas, first, torch.rand(model.n_candidates, 1, 16, 16))
    _, m2 = model.render_sprites(betas, first, torch.rand(model.n_candidates, 1, 16, 16))
    assert not torch.equal(m1, m2)
    torch.manual_seed(1)
    c = model(images)
    torch.manual_seed(1)
    assert torch.equal(c.recon, model(images).recon)  # same seed, same noise
    model.eval()
    betas = model.predict(model.encoder(images))
    idx = torch.full((2, 1, 3), model.K)
    _, masks = model.render_sprites(betas, idx, None)
    assert masks.abs().max() == 0


def test_frozen_sprites_get_no_gradient_and_skip_the_empty_sprite():
    model = make_model(add_empty_sprite=True)
    model.sprites_frozen = True
    out = model(torch.rand(4, 3, 16, 16))
    out.loss.mean().backward()
    assert model.prototypes.grad is None and model.masks.grad is None
    assert (out.sprite_idx < model.K).all()


def test_restart_sprite_copies_rows_and_optimizer_moments():
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(2):
        opt.zero_grad()
        model(torch.rand(4, 3, 16, 16)).loss.mean().backward()
        opt.step()
    src, dst = 1, 3
    before_other = model.prototypes[0].clone()
    model.restart_sprite(dst, src, opt)
    assert torch.allclose(model.prototypes[dst], model.prototypes[src], atol=1e-3)
    assert not torch.equal(model.prototypes[dst], model.prototypes[src])  # noise added
    assert torch.equal(model.masks[dst], model.masks[src])
    assert torch.equal(model.prototypes[0], before_other)
    L, K = model.L, model.K
    for bank in model.sprite_transformer.heads:
        if bank is None:
            continue
        for l in range(L):
            assert torch.equal(bank.first_weight[l * K + dst], bank.first_weight[l * K + src])
            state = opt.state[bank.last_weight]
            assert torch.equal(state["exp_avg"][l * K + dst], state["exp_avg"][l * K + src])
            assert torch.equal(state["exp_avg_sq"][l * K + dst], state["exp_avg_sq"][l * K + src])
    assert torch.equal(opt.state[model.prototypes]["exp_avg"][dst], opt.state[model.prototypes]["exp_avg"][src])


def test_reassignment_restarts_only_rare_sprites():
    model = make_model(n_objects=1)
    counts = torch.tensor([[50, 0, 48, 1, 1]])[:, : model.n_candidates]  # K = 4 sprites
    before = model.prototypes.detach().clone()
    restarted = reassign_empty_clusters(model, None, counts, threshold=0.2 / model.K)
    assert restarted == [(1, 0), (3, 2)]  # split: each from a different busy sprite, busiest first
    assert torch.allclose(model.prototypes[1], before[0], atol=1e-3)
    assert torch.allclose(model.prototypes[3], before[2], atol=1e-3)


def test_curriculum_switches_modules_on_and_survives_state_dict():
    model = make_model(transformation_sequence="color_affine", curriculum_learning=[2])
    assert model.sprite_transformer.active == [True, False]
    assert model.advance_curricula(1) == []
    assert model.advance_curricula(2) == ["affine"]
    state = model.state_dict()
    fresh = make_model(transformation_sequence="color_affine", curriculum_learning=[2])
    fresh.load_state_dict(state)
    assert fresh.sprite_transformer.active == [True, True]


def test_bf16_encoder_stays_close_to_float32():
    model = make_model(inject_noise=0.0)
    model.eval()
    with torch.no_grad():  # heads start at zero; give the features a say in the output
        for transformer in model.transformers():
            for bank in transformer.heads:
                if bank is not None:
                    bank.last_weight.normal_(0, 0.05)
    images = torch.rand(4, 3, 16, 16)
    exact = model(images)
    plain_features = model.encode(images)
    model.encoder_bf16 = True
    assert not torch.equal(model.encode(images), plain_features)  # bf16 really ran
    model.encoder_bf16 = False
    model.encoder_bf16 = True
    fast = model(images)
    assert fast.recon.dtype == torch.float32
    assert torch.allclose(fast.loss, exact.loss, rtol=0.05, atol=1e-3)


@pytest.mark.slow
def test_compiled_model_matches_eager_and_keeps_state_dict_keys():
    model = make_model(inject_noise=0.0)
    keys = set(model.state_dict())
    images = torch.rand(4, 3, 16, 16)
    eager = model(images)
    compile_model(model, True)
    compiled = model(images)
    compiled.loss.mean().backward()
    assert torch.equal(compiled.sprite_idx, eager.sprite_idx)
    assert torch.allclose(compiled.loss, eager.loss, rtol=1e-4, atol=1e-6)
    assert model.prototypes.grad is not None and set(model.state_dict()) == keys


def test_forward_returns_its_head_outputs_and_object_views():
    """Callers read the betas and the object layers from the result instead of running the
    encoder again or slicing off the background themselves."""
    model = make_model(n_objects=3, pred_occlusion=True).eval()
    images = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        out = model(images)
        betas = model.predict(model.encode(images))
    for key in ("sprite", "layer", "bkg"):
        for ours, again in zip(out.betas[key], betas[key]):
            assert (ours is None and again is None) or torch.equal(ours, again)
    assert torch.equal(out.betas["occlusion"], betas["occlusion"])
    assert out.first_object == 1 and torch.equal(out.background, out.colors[0])
    assert torch.equal(out.object_colors, out.colors[1:]) and torch.equal(out.object_masks, out.masks[1:])
    assert torch.equal(out.object_occlusion, out.occlusion[:, 1:, 1:])
    no_bkg = make_model(n_backgrounds=0).eval()
    with torch.no_grad():
        plain = no_bkg(images)
    assert plain.first_object == 0 and plain.background is None
    assert torch.equal(plain.object_masks, plain.masks)


def test_render_candidates_draws_every_sprite_in_every_layer():
    model = make_model(n_objects=2, add_empty_sprite=True, lambda_empty_sprite=1e-3).eval()
    images = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        out = model(images)
        colors, masks = model.render_candidates(out.betas, 3)
        idx = torch.arange(model.n_candidates).view(1, -1, 1).expand(2, -1, 3)
        one_by_one = model.render_sprites(out.betas, idx, None)
    assert colors.shape == (2, model.n_candidates, 3, 3, 16, 16) and masks.shape == (
        2,
        model.n_candidates,
        3,
        1,
        16,
        16,
    )
    assert torch.equal(colors, one_by_one[0]) and torch.equal(masks, one_by_one[1])
    assert masks[:, model.K].abs().max() == 0  # the empty sprite
    picked = masks.gather(1, out.sprite_idx[:, None, :, None, None, None].expand(-1, 1, -1, 1, 16, 16))[:, 0]
    assert torch.equal(picked, out.object_masks)  # the selection's rendering is the forward's


@pytest.mark.parametrize("layer_sequence", ["color_position", "position_color", "color_affine_morpho", "position"])
def test_candidate_renderer_equals_rendering_each_candidate_bit_for_bit(layer_sequence):
    """The candidate renderer broadcasts the sprite stack against the layers' colours and warps
    the noise canvas once per (layer, image); render_sprites copies every sprite per (layer,
    image) first. Same bits, noise and the empty sprite included."""
    model = make_model(
        transformation_sequence="identity",
        transformation_sequence_layer=layer_sequence,
        n_objects=2,
        add_empty_sprite=True,
        inject_noise=0.4,
    ).train()
    B = 5
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))  # heads off zero: colours, placements and masks vary
        betas = model.predict(*model.encode_map(torch.rand(B, 3, 16, 16)))
        noise = torch.rand(model.n_candidates, 1, 16, 16)
        stack = model._sprite_stack()
        assert model._warps_per_layer(betas)
        colors, masks = model.render_candidates(betas, B, noise, stack)
        idx = torch.arange(model.n_candidates).view(1, -1, 1).expand(2, -1, B)
        ref_colors, ref_masks = model.render_sprites(betas, idx, noise, stack)
    assert colors.shape == ref_colors.shape and masks.shape == ref_masks.shape
    assert torch.equal(colors, ref_colors) and torch.equal(masks, ref_masks)
    assert masks[:, : model.K].std() > 0.05 and colors.std() > 0.05  # something was drawn
