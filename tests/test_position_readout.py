"""The learned selection's position readout (model/position_readout.py): the centres it reads are
where the warps draw the sprites, it reads the feature map there and nowhere else, reassignment
copies it, and a layer sequence it cannot read is refused by name."""

import pytest
import torch
from conftest import small_config

from dti_sprites.errors import ConfigError
from dti_sprites.model.clamp import get_clamp
from dti_sprites.model.position_readout import PositionReadout, layer_centres
from dti_sprites.model.sprites_model import DTISprites
from dti_sprites.model.transform_sequence import TransformSequence

OUT = (35, 35)


def _centroid(images: torch.Tensor) -> torch.Tensor:
    """Mass centre (N, 2) of images (N, 1, H, W) in normalised (x, y), pixel centres as in the warps."""
    H, W = images.shape[-2:]
    ys = (2 * torch.arange(H) + 1) / H - 1
    xs = (2 * torch.arange(W) + 1) / W - 1
    mass = images[:, 0]
    total = mass.sum((1, 2))
    return torch.stack([(mass.sum(1) * xs).sum(1) / total, (mass.sum(2) * ys).sum(1) / total], 1)


@pytest.mark.parametrize(
    "sequence, spread", [("color_position", 0.2), ("position_affine", 0.2), ("similarity_projective", 0.05)]
)
def test_layer_centres_are_where_the_warps_draw_the_sprite_centre(sequence, spread):
    """A small blob at the sprite's centre, warped by random placements of L layers x B images,
    lands where `layer_centres` says, chains of two spatial modules included. (A strong
    perspective moves a blob's mass centre away from its centre's image: hence a small spread.)"""
    L, B = 3, 4
    layers = TransformSequence(sequence, L, in_features=8, n_colors=1, clamp=get_clamp("soft"))
    gen = torch.Generator().manual_seed(0)
    betas = [
        None if t.n_params == 0 else spread * torch.randn(L, B, t.n_params, generator=gen) for t in layers.transforms
    ]
    ys, xs = torch.meshgrid(torch.arange(24) - 11.5, torch.arange(24) - 11.5, indexing="ij")
    blob = torch.exp(-(xs**2 + ys**2) / 4.0).expand(L * B, 1, 24, 24).contiguous()  # centred on the sprite
    warped = layers(blob, [None if b is None else b.reshape(L * B, -1) for b in betas], OUT)
    expected = _centroid(warped[:, :1]).view(L, B, 2)
    centres = layer_centres(layers, betas)
    assert centres.abs().max() > 0.1  # the placements do move the sprites
    torch.testing.assert_close(centres, expected, atol=0.03, rtol=0)


def test_layer_centres_skip_modules_the_curriculum_has_not_switched_on():
    layers = TransformSequence("color_position", 2, in_features=8, n_colors=1, clamp=get_clamp("soft"), milestones=[3])
    betas = [torch.randn(2, 5, t.n_params) for t in layers.transforms]
    assert torch.equal(layer_centres(layers, betas), torch.zeros(2, 5, 2))


def test_readout_reads_the_feature_map_at_each_centre_only():
    """Logits change when the map changes at a layer's centre, and not when it changes elsewhere."""
    torch.manual_seed(0)
    readout = PositionReadout(map_channels=6, n_candidates=5, n_hidden_layers=2, norm_layer=None)
    torch.nn.init.normal_(readout.head.last_weight)  # zero at the start: give it something to say
    feature_map = torch.randn(2, 6, 9, 9)
    centres = torch.tensor([[[-0.5, -0.5], [0.5, 0.5]]]).expand(3, 2, 2).clone()  # (L, B, 2)
    centres[1] = torch.tensor([[0.5, -0.5], [-0.5, 0.5]])
    before = readout(feature_map, centres)
    elsewhere = feature_map.clone()
    elsewhere[:, :, 4, 4] += 10.0  # the middle cell, at normalised (0, 0): no centre reads it
    torch.testing.assert_close(readout(elsewhere, centres), before)
    there = feature_map.clone()
    there[1, :, 6:8, 6:8] += 10.0  # around (0.5, 0.5): image 1's centre in layers 0 and 2
    changed = (readout(there, centres) - before).abs().amax(-1)  # (L, B)
    assert changed[0, 1] > 0.1 and changed[2, 1] > 0.1
    assert changed[:, 0].max() == 0 and changed[1, 1] == 0


def _position_model(**model) -> DTISprites:
    cfg = small_config({"selection": "learned", "estimate_minimum": False, "selection_readout": "position", **model})[
        "model"
    ]
    return DTISprites(cfg, (16, 16), 3, seed=0)


def test_reassignment_copies_the_readout_column_of_the_sprite():
    net = _position_model(transformation_sequence_layer="color_position")
    head = net.selector.readout.head
    with torch.no_grad():
        head.last_weight.normal_()
        head.last_bias.normal_()
    net.selector.copy_sprite(1, 0, None, noise_std=0.0)
    torch.testing.assert_close(head.last_weight[..., 1], head.last_weight[..., 0])
    torch.testing.assert_close(head.last_bias[..., 1], head.last_bias[..., 0])


def test_a_forward_step_trains_the_readout():
    net = _position_model(transformation_sequence_layer="color_position")
    with torch.no_grad():  # distinct sprites: switching between equal ones changes nothing
        net.prototypes.uniform_()
        net.masks.uniform_()
    out = net(torch.rand(4, 3, 16, 16))
    out.objective().backward()
    assert out.betas["selection"].shape == (net.L, 4, net.K)
    assert net.selector.readout.head.last_weight.grad.abs().sum() > 0


@pytest.mark.parametrize("sequence", ["identity", "color", "color_tps"])
def test_a_layer_sequence_without_a_readable_placement_is_refused_by_name(sequence):
    with pytest.raises(ConfigError, match="selection_readout.*transformation_sequence_layer"):
        _position_model(transformation_sequence_layer=sequence)
