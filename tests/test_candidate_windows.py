"""Candidates drawn over their windows only (candidate_windows.py): the same images as
grid_sample over the whole canvas, and the same choices."""

import pytest
import torch
import torch.nn.functional as F

from dti_sprites.model.candidate_windows import Windows, axis_weights
from dti_sprites.model.sprites_model import DTISprites

from conftest import small_config


def paste_all(windows: Windows, x: torch.Tensor) -> torch.Tensor:
    """Every layer's windows (L, N, B, Ch, h', w') on the canvas -> (L, N, B, Ch, H, W)."""
    return torch.stack([torch.stack([windows.paste(n, layer) for n in x[layer]]) for layer in range(x.shape[0])])


def windowed_model(layer_sequence="color_position", **model):
    torch.manual_seed(0)
    cfg = {
        "transformation_sequence": "identity",
        "transformation_sequence_layer": layer_sequence,
        "n_objects": 2,
        "add_empty_sprite": True,
        "lambda_empty_sprite": 1e-3,
        "inject_noise": 0.4,
    }
    net = DTISprites(small_config({**cfg, **model})["model"], (16, 16), 3).train()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))  # heads off zero: colours, placements and masks vary
    return net


def test_axis_weights_blend_as_grid_sample():
    torch.manual_seed(1)
    G, h, w, H, W = 6, 7, 9, 11, 13
    image = torch.rand(G, 2, h, w)
    scale_x, scale_y = torch.rand(G) * 2 + 0.5, torch.rand(G) * 2 + 0.5
    shift_x, shift_y = torch.randn(G), torch.randn(G)  # some land partly off the canvas
    theta = torch.zeros(G, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = scale_x, shift_x, scale_y, shift_y
    grid = F.affine_grid(theta, (G, 2, H, W), align_corners=False)
    expected = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    across, down = axis_weights(scale_x, shift_x, W, w), axis_weights(scale_y, shift_y, H, h)
    separable = torch.einsum("gyh,gchw,gxw->gcyx", down, image, across)
    assert torch.allclose(separable, expected, atol=1e-6)
    assert ((across > 0).sum(2) <= 2).all()  # two input pixels per output pixel at most


def test_windows_cut_and_paste():
    windows = Windows(torch.tensor([[0, 3], [2, 1]]), torch.tensor([[1, 0], [4, 2]]), (3, 2), (6, 7))
    x = torch.rand(2, 4, 6, 7)
    cut = windows.crop(x, 1)
    assert cut.shape == (2, 4, 3, 2)
    assert torch.equal(cut[0], x[0, :, 2:5, 4:6]) and torch.equal(cut[1], x[1, :, 1:4, 2:4])
    pasted = windows.paste(cut, 1)
    assert torch.equal(pasted[1, :, 1:4, 2:4], cut[1])
    pasted[1, :, 1:4, 2:4] = 0
    assert pasted[1].abs().max() == 0  # zeros outside the window
    every = windows.crop_all(torch.rand(5, 1, 6, 7))  # (L, N, B, 1, h', w')
    assert every.shape == (2, 5, 2, 1, 3, 2)
    assert torch.equal(paste_all(windows, every)[0, :, 1, :, 3:6, 0:2], every[0, :, 1])


@pytest.mark.parametrize("shift", [0.0, 2.5])
def test_windowed_candidates_are_the_canvas_candidates_cut(shift):
    """Noise and the empty sprite included; shift 2.5 pushes the first layer off the canvas."""
    model = windowed_model()
    B = 5
    with torch.no_grad():
        betas = model.predict(*model.encode_map(torch.rand(B, 3, 16, 16)))
        betas["layer"][1][0, :, 1] += shift
        noise = torch.rand(model.n_candidates, 1, 16, 16)
        stack = model._sprite_stack()
        colors, masks = model.render_candidates(betas, B, noise, stack)
        win_colors, win_masks, windows = model.render_candidate_windows(betas, B, noise, stack)
    assert win_colors.shape[:4] == colors.shape[:4] and max(windows.size) < 16  # half the canvas and a margin
    assert torch.allclose(paste_all(windows, win_colors), colors, atol=1e-6)
    assert torch.allclose(paste_all(windows, win_masks), masks, atol=1e-6)
    assert masks[:, : model.K].std() > 0.05  # something was drawn


@pytest.mark.parametrize("background", [0, 1])
def test_greedy_choice_and_loss_as_on_the_whole_canvas(background, monkeypatch):
    model = windowed_model(n_objects=3, n_backgrounds=background, pred_occlusion=True, greedy_algo_iter=2)
    images = torch.rand(6, 3, 16, 16)
    torch.manual_seed(3)
    windowed = model(images)
    monkeypatch.setattr(model, "render_candidate_windows", lambda *args: None)
    torch.manual_seed(3)
    canvas = model(images)
    assert torch.equal(windowed.sprite_idx, canvas.sprite_idx)
    assert torch.allclose(windowed.loss, canvas.loss, atol=1e-6)
    assert windowed.sprite_idx.unique().numel() > 1  # the choice is not trivial


@pytest.mark.parametrize("layer_sequence", ["color_affine", "position_color", "color_tps"])
def test_no_windows_where_rows_and_columns_mix(layer_sequence):
    model = windowed_model(layer_sequence)
    with torch.no_grad():
        betas = model.predict(*model.encode_map(torch.rand(2, 3, 16, 16)))
        assert model.render_candidate_windows(betas, 2, None, model._sprite_stack()) is None


def test_no_windows_when_sprites_transform_themselves():
    model = windowed_model(transformation_sequence="color_affine")
    with torch.no_grad():
        betas = model.predict(*model.encode_map(torch.rand(2, 3, 16, 16)))
        assert model.render_candidate_windows(betas, 2, None, model._sprite_stack()) is None
