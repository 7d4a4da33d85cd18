"""Transformation modules: identities at β = 0, hand-computed cases and gradients."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from scipy.interpolate import RBFInterpolator

from dti_sprites.errors import ConfigError
from dti_sprites.model.clamp import hard_clamp, no_clamp
from dti_sprites.model.transforms import (
    TRANSFORMS,
    Transform,
    _identity_grid,
    build_transform,
    describe_conventions,
    parse_sequence,
)

N_COLORS = 3
SPATIAL = ["affine", "similarity", "projective", "tps"]


def make(name, **kwargs):
    kwargs.setdefault("n_colors", N_COLORS)
    kwargs.setdefault("clamp", no_clamp)
    return build_transform(name, **kwargs)


def zero_beta(module, n=2):
    return torch.zeros(n, module.n_params)


def square_image(size=12, top=4, left=5, side=2):
    """One-channel image with a bright square, (1, 1, size, size)."""
    x = torch.zeros(1, 1, size, size)
    x[..., top : top + side, left : left + side] = 1
    return x


@pytest.fixture
def sprite():
    torch.manual_seed(0)
    return torch.rand(2, N_COLORS + 2, 10, 10)  # (N, C + mask + canvas, h, w)


@pytest.mark.parametrize("name", ["identity"] + SPATIAL + ["color"])
def test_zero_beta_is_identity(name, sprite):
    module = make(name)
    out = module(sprite, zero_beta(module), (10, 10))
    assert out.shape == sprite.shape
    assert torch.allclose(out, sprite, atol=1e-5)


def test_position_zero_beta_draws_half_size_centred():
    module = make("position")
    torch.manual_seed(1)
    x = torch.rand(1, 2, 8, 8)
    out = module(x, zero_beta(module, 1), (8, 8))
    # A = 2I: the whole input lands on the central half, each pixel the mean of a 2x2 block.
    assert torch.allclose(out[..., 2:6, 2:6], F.avg_pool2d(x, 2), atol=1e-5)
    border = out.clone()
    border[..., 2:6, 2:6] = 0
    assert border.abs().max() == 0


def test_position_resizes_onto_larger_canvas():
    module = make("position")
    x = torch.ones(1, 1, 6, 6)
    out = module(x, zero_beta(module, 1), (16, 16))
    assert out.shape == (1, 1, 16, 16)
    # The 6x6 sprite covers the central half of the 16x16 canvas (8x8 pixels of mass), its
    # edges blurred over one pixel each side by bilinear sampling with zero padding.
    assert torch.allclose(out[..., 5:11, 5:11], torch.ones(6, 6), atol=1e-5)
    assert out.sum().item() == pytest.approx(64, abs=1e-3)
    profile = torch.tensor([0.125, 0.875, 1, 1, 1, 1, 1, 1, 0.875, 0.125])
    assert torch.allclose(out[0, 0, 8, 3:13], profile, atol=1e-5)
    assert out[..., :3, :].abs().max() == 0 and out[..., 13:, :].abs().max() == 0


@pytest.mark.parametrize("name", ["affine", "similarity", "position", "projective"])
def test_translation_moves_content_left_for_positive_tx(name):
    module = make(name)
    size, shift = 12, 3
    x = square_image(size, top=4, left=6)
    beta = torch.zeros(1, module.n_params)
    tx_index = {"affine": 2, "similarity": 2, "position": 1, "projective": 2}[name]
    ty_index = {"affine": 5, "similarity": 3, "position": 2, "projective": 5}[name]
    if name == "position":
        beta[0, 0] = math.log(1e-12)  # scale 1 + e^s ~ 1
    # Output q samples input q + t: with t = 2 * shift / W the content moves by -shift pixels.
    beta[0, tx_index] = 2 * shift / size
    beta[0, ty_index] = -2 * 1 / size
    out = module(x, beta, (size, size))
    expected = square_image(size, top=4 + 1, left=6 - shift)
    assert torch.allclose(out, expected, atol=1e-4)


def test_similarity_quarter_turn_matches_rot90():
    module = make("similarity")
    torch.manual_seed(2)
    x = torch.rand(1, 2, 7, 7)
    beta = torch.tensor([[-1.0, 1.0, 0.0, 0.0]])  # A = [[0, -1], [1, 0]]
    out = module(x, beta, (7, 7))
    # Output (row r, col c) samples input (row c, col W-1-r).
    assert torch.allclose(out, torch.rot90(x, 1, dims=(-2, -1)), atol=1e-5)
    assert not torch.allclose(out, x, atol=1e-2)


def test_affine_matches_its_matrix_on_a_scaled_grid():
    module = make("affine")
    beta = torch.tensor([[0.5, 0.0, 0.0, 0.0, -0.5, 0.0]])  # x scaled 1.5, y scaled 0.5
    grid = module.sampling_grid(beta, (4, 6))
    q = _identity_grid((4, 6), None, torch.float32).view(4, 6, 2)
    assert torch.allclose(grid[0, ..., 0], 1.5 * q[..., 0])
    assert torch.allclose(grid[0, ..., 1], 0.5 * q[..., 1])


def test_color_gain_bias_then_clamp():
    module = make("color", clamp=hard_clamp)
    x = torch.full((1, N_COLORS + 2, 4, 4), 0.5)
    x[:, N_COLORS] = 0.3  # mask
    x[:, N_COLORS + 1] = 2.0  # canvas, must pass untouched (no clamp)
    beta = torch.tensor([[0.2, -0.5, 1.0, 0.1, 0.0, 0.8]])
    out = module(x, beta, (4, 4))
    expected = torch.tensor([0.7, 0.25, 1.0])  # (1+w) 0.5 + b, last one clamped from 1.8
    assert torch.allclose(out[0, :N_COLORS, 0, 0], expected)
    assert torch.allclose(out[:, N_COLORS], torch.full((1, 4, 4), 0.3))
    assert torch.allclose(out[:, N_COLORS + 1], torch.full((1, 4, 4), 2.0))


def test_color_expands_grey_input():
    module = make("color")
    grey = torch.rand(2, 1, 5, 5)
    out = module(grey, zero_beta(module), (5, 5))
    assert out.shape == (2, N_COLORS, 5, 5)
    assert torch.allclose(out, grey.expand(-1, N_COLORS, -1, -1))
    grey_sprite = torch.rand(2, 3, 5, 5)  # grey colour + mask + canvas, n_colors = 3 is ambiguous
    out = make("color", n_colors=1)(grey_sprite, torch.zeros(2, 2), (5, 5))
    assert torch.equal(out, grey_sprite)


def test_color_broadcasts_one_stack_against_many_parameter_sets():
    """(1, K, Ch, h, w) against (G, 1, 2C) gives what each of the G x K pairs gives alone,
    with or without the noise canvas after the mask."""
    module = make("color")
    for extra in (1, 2):
        stack = torch.rand(1, 4, N_COLORS + extra, 5, 5)
        beta = torch.randn(3, 1, 2 * N_COLORS)
        out = module(stack, beta, (5, 5))
        assert out.shape == (3, 4, N_COLORS + extra, 5, 5)
        for g in range(3):
            alone = module(stack[0], beta[g].expand(4, -1), (5, 5))
            assert torch.equal(out[g], alone)
        assert torch.equal(out[:, :, N_COLORS:], stack[:, :, N_COLORS:].expand(3, -1, -1, -1, -1))


def test_projective_translation_equals_affine_translation(sprite):
    proj, aff = make("projective"), make("affine")
    beta_p = torch.zeros(2, 9)
    beta_a = torch.zeros(2, 6)
    beta_p[:, 2] = beta_a[:, 2] = 0.3
    beta_p[:, 5] = beta_a[:, 5] = -0.2
    assert torch.allclose(proj(sprite, beta_p, (8, 9)), aff(sprite, beta_a, (8, 9)), atol=1e-5)


def bilinear_by_hand(image, u, v):
    """Sample a (h, w) image at normalised (u, v) with zero padding, align_corners=False."""
    h, w = image.shape
    col, row = ((u + 1) * w - 1) / 2, ((v + 1) * h - 1) / 2
    c0, r0 = math.floor(col), math.floor(row)
    total = 0.0
    for dr, dc in [(0, 0), (0, 1), (1, 0), (1, 1)]:
        r, c = r0 + dr, c0 + dc
        weight = (1 - abs(row - r)) * (1 - abs(col - c))
        if 0 <= r < h and 0 <= c < w:
            total += weight * image[r, c].item()
    return total


def test_projective_perspective_row_matches_hand_computation():
    module = make("projective")
    torch.manual_seed(3)
    x = torch.rand(1, 1, 6, 8)
    beta = torch.zeros(1, 9)
    beta[0, 6], beta[0, 7], beta[0, 1] = 0.4, -0.3, 0.2  # h31, h32, h12
    out = module(x, beta, (6, 8))
    assert not torch.allclose(out, make("affine")(x, torch.zeros(1, 6), (6, 8)), atol=1e-3)
    row, col = 1, 5
    qx, qy = (2 * col + 1) / 8 - 1, (2 * row + 1) / 6 - 1
    depth = 0.4 * qx - 0.3 * qy + 1
    u, v = (qx + 0.2 * qy) / depth, qy / depth
    assert out[0, 0, row, col].item() == pytest.approx(bilinear_by_hand(x[0, 0], u, v), abs=1e-5)


def test_projective_degenerate_depth_stays_finite(sprite):
    module = make("projective")
    beta = torch.zeros(2, 9)
    beta[:, 8] = -1.0  # third row (0, 0, 0): depth is exactly 0 everywhere
    beta.requires_grad_(True)
    out = module(sprite, beta, (10, 10))
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(beta.grad).all()


def test_tps_uniform_offset_is_translation(sprite):
    tps, aff = make("tps", grid_size=3), make("affine")
    beta_t = torch.tensor([0.25, -0.1]).repeat(2, 9)  # every source point moved by (0.25, -0.1)
    beta_a = torch.tensor([[0.0, 0.0, 0.25, 0.0, 0.0, -0.1]]).repeat(2, 1)
    assert torch.allclose(tps(sprite, beta_t, (10, 10)), aff(sprite, beta_a, (10, 10)), atol=1e-5)


def test_tps_interpolates_control_points_and_matches_scipy():
    module = make("tps", grid_size=4)
    torch.manual_seed(4)
    beta = 0.1 * torch.randn(2, module.n_params)
    targets = module.control_points()
    assert torch.allclose(targets[:4, 1], torch.full((4,), -1.0))  # first row: y = -1, x fastest
    assert torch.allclose(targets[:4, 0], torch.linspace(-1, 1, 4))
    sources = targets + beta.view(2, -1, 2)
    assert torch.allclose(module.warp_points(beta, targets), sources, atol=1e-5)
    # kornia's TPS centres its kernels on the destination points, so scipy's textbook TPS
    # (kernel r^2 log r plus a degree-1 polynomial) is the reference instead.
    grid = module.sampling_grid(beta, (5, 7)).view(2, -1, 2)
    q = _identity_grid((5, 7), None, torch.float32).double().numpy()
    for i in range(2):
        reference = RBFInterpolator(
            targets.double().numpy(), sources[i].double().numpy(), kernel="thin_plate_spline", degree=1
        )(q)
        assert torch.allclose(grid[i], torch.from_numpy(reference).float(), atol=1e-5)


def test_tps_n_params_follow_grid_size():
    assert make("tps", grid_size=5).n_params == 50
    with pytest.raises(ConfigError, match="grid_size"):
        make("tps", grid_size=1)


def binary_mask():
    mask = torch.zeros(1, 1, 9, 9)
    mask[..., 3:6, 2:7] = 1
    mask[..., 1, 1] = 1
    return mask


def morpho_params(module, alpha=0.0, n=1):
    params = module.param_offset().expand(n, -1).clone()
    params[:, 0] = alpha
    return params


def test_morpho_offset_and_near_identity():
    module = make("morpho")
    offset = module.param_offset()
    assert offset.shape == (10,) and module.n_params == 10
    assert offset[0] == 0 and offset[5] == 5 and (offset[1:5] == -5).all() and (offset[6:] == -5).all()
    mask = binary_mask()
    out = module(mask, torch.zeros(1, 10) + offset, (9, 9))
    assert (out - mask).abs().max() < 0.06
    assert (out - mask).abs().max() > 0  # neighbours do leak a little


def test_morpho_large_alpha_dilates_and_erodes():
    module = make("morpho")
    mask = binary_mask()
    dilated = module(mask, morpho_params(module, alpha=60.0), (9, 9))
    assert torch.allclose(dilated, F.max_pool2d(mask, 3, stride=1, padding=1), atol=1e-3)
    eroded = module(mask, morpho_params(module, alpha=-60.0), (9, 9))
    min_pool = -F.max_pool2d(-F.pad(mask, (1, 1, 1, 1)), 3, stride=1)  # zero-padded min
    assert torch.allclose(eroded, min_pool, atol=1e-3)
    assert torch.isfinite(module(mask, morpho_params(module, alpha=1e4), (9, 9))).all()


def test_morpho_touches_only_the_mask_channel(sprite):
    module = make("morpho")
    params = morpho_params(module, alpha=30.0, n=2)
    out = module(sprite, params, (10, 10))
    assert torch.equal(out[:, :N_COLORS], sprite[:, :N_COLORS])
    assert torch.equal(out[:, N_COLORS + 1], sprite[:, N_COLORS + 1])
    assert not torch.allclose(out[:, N_COLORS], sprite[:, N_COLORS], atol=1e-2)


@pytest.mark.parametrize("name", SPATIAL + ["position", "color", "morpho"])
def test_gradients_reach_beta_and_input(name, sprite):
    module = make(name)
    beta = torch.zeros(2, module.n_params)
    if module.param_offset() is not None:
        beta = beta + module.param_offset()
    beta.requires_grad_(True)
    x = sprite.clone().requires_grad_(True)
    weights = torch.rand(2, N_COLORS + 2, 10, 10)
    (module(x, beta, (10, 10)) * weights).sum().backward()
    assert beta.grad.abs().sum() > 0
    assert x.grad.abs().sum() > 0


def test_kinds_and_sizes():
    sizes = {"identity": 0, "color": 6, "affine": 6, "position": 3, "similarity": 4, "projective": 9, "tps": 32}
    for name, size in sizes.items():
        module = make(name)
        assert isinstance(module, Transform) and module.n_params == size
    assert make("color").kind == "color" and make("tps").kind == "spatial"
    assert make("morpho").kind == "mask" and make("id").kind == "identity"
    assert make("affine").param_offset() is None


def test_parse_sequence_and_aliases():
    assert parse_sequence("color_projective_tps") == ["color", "projective", "tps"]
    assert parse_sequence("col_proj_thinplatespline") == ["color", "projective", "tps"]
    assert parse_sequence("id") == ["identity"]
    assert parse_sequence("homography_sim_pos_aff_morphological") == [
        "projective",
        "similarity",
        "position",
        "affine",
        "morpho",
    ]
    aliases = ["identity", "id", "color", "col", "affine", "aff", "position", "pos", "similarity", "sim"]
    aliases += ["projective", "proj", "homography", "tps", "thinplatespline", "morpho", "morphological"]
    assert sorted(aliases) == TRANSFORMS.names()


def test_unknown_names_raise_config_error():
    with pytest.raises(ConfigError, match="'rotation'") as info:
        parse_sequence("color_rotation")
    assert "projective" in str(info.value)  # lists the choices
    with pytest.raises(ConfigError, match="'warp'"):
        build_transform("warp", n_colors=3, clamp=no_clamp)
    with pytest.raises(ConfigError):
        parse_sequence("")


def _registered_modules():
    return [cls(n_colors=N_COLORS, clamp=no_clamp) for cls in TRANSFORMS.factories()]


@pytest.mark.parametrize("module", _registered_modules(), ids=lambda m: m.name)
def test_every_module_describes_itself_in_json(module):
    """Decompositions ask each module for its terms: every registered one must answer, at β = 0
    and elsewhere, with plain numbers only."""
    for beta in (torch.zeros(module.n_params), torch.linspace(-0.3, 0.2, module.n_params)):
        beta = beta.double() + (module.param_offset().double() if module.param_offset() is not None else 0)
        terms = module.describe(beta, (10, 14))
        assert terms["module"] == module.name and len(terms["beta"]) == module.n_params
        json.dumps(terms, allow_nan=False)
    for key, text in vars(type(module)).get("conventions", {}).items():
        assert key in describe_conventions() and text == describe_conventions()[key]


@pytest.mark.parametrize("name", ["affine", "position", "similarity", "projective"])
def test_sampling_matrix_is_the_map_the_warp_samples(name):
    module = make(name)
    torch.manual_seed(3)
    beta = 0.2 * torch.randn(2, module.n_params, dtype=torch.float64)
    matrix = module.sampling_matrix(beta)  # (2, 3, 3)
    q = _identity_grid((5, 7), None, torch.float64)  # (35, 2)
    mapped = torch.cat([q, torch.ones_like(q[:, :1])], 1) @ matrix.transpose(1, 2)  # (2, 35, 3)
    expected = (mapped[..., :2] / mapped[..., 2:]).view(2, 5, 7, 2)
    assert torch.allclose(module.sampling_grid(beta, (5, 7)), expected, atol=1e-12)


def test_modules_without_a_plane_map_have_no_sampling_matrix():
    for name in ("identity", "color", "tps", "morpho"):
        module = make(name)
        assert module.sampling_matrix(torch.zeros(1, module.n_params)) is None


def test_described_terms_follow_each_formula():
    color = make("color").describe(torch.tensor([0.5, 0, -0.5, 0.1, 0.2, 0.3], dtype=torch.float64), (8, 8))
    assert color["gain"] == [1.5, 1.0, 0.5] and color["bias"] == [0.1, 0.2, 0.3]
    position = make("position").describe(torch.tensor([0.0, 0.5, -0.3], dtype=torch.float64), (20, 40))
    assert position["extent"] == 0.5 and position["extent_xy"] == [0.5, 0.5]
    assert position["offset_px"] == pytest.approx([-0.25 * 20, 0.15 * 10])  # -(t)/(1+e^s) * (W/2, H/2)
    assert list(position)[-2:] == ["extent", "matrix"]
    quarter_turn = make("similarity").describe(torch.tensor([-1.0, 1.0, 0, 0], dtype=torch.float64), (8, 8))
    assert quarter_turn["rotation_deg"] == pytest.approx(-90)
    tps = make("tps", grid_size=2).describe(torch.tensor([0.5, 0.0] * 4, dtype=torch.float64), (10, 20))
    assert tps["control_grid"] == 2 and tps["mean_shift_px"] == tps["max_shift_px"] == 5.0
    morpho = make("morpho")
    assert morpho.describe(morpho.param_offset().double(), (8, 8))["effect"] == "none"
    assert morpho.describe(morpho.param_offset().double() + 1, (8, 8))["effect"] == "dilation"
