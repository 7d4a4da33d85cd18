"""Transformation modules: colour, spatial and mask deformations of sprites and backgrounds.

Each module is one class registered by name below; what every module provides (β, tensor
layout, coordinates, how it describes itself) is written in transform_base.py. A new module
is one class in this file.

Reference: Monnier et al., "Unsupervised Layered Image Decomposition into Object Prototypes",
ICCV 2021 (arXiv 2104.14575), section 3 and appendix.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ..registry import Registry
from .canvas_geometry import rounded
from .transform_base import SpatialTransform, Transform, pixel_centres

TRANSFORMS: Registry = Registry("transformation")

# Below this magnitude the projective third coordinate is pushed away from 0 (sign kept).
_PROJECTIVE_EPS = 1e-6
# Morpho starts with a strong centre weight (sigmoid(5) ~ 0.993) and weak neighbours.
_MORPHO_INIT_LOGIT = 5.0


@TRANSFORMS.register("identity", "id")
class IdentityTransform(Transform):
    """Leaves x unchanged (d = 0); out_size is ignored."""

    def __call__(self, x: Tensor, beta: Tensor, out_size: tuple[int, int]) -> Tensor:
        return x


@TRANSFORMS.register("color", "col")
class ColorTransform(Transform):
    """Per-channel gain and bias, out_c = (1 + w_c) x_c + b_c, then the clamp (d = 2C).

    Only the colour channels change; a 1-colour sprite or background is first expanded to
    n_colors channels so that a grey prototype can be tinted.
    """

    name = kind = "color"
    broadcasts = True
    conventions = {"color": "out_c = gain_c * in_c + bias_c per channel (R, G, B), then clamped to [0, 1]"}

    def count_params(self) -> int:
        return 2 * self.n_colors

    def gain_bias(self, beta: Tensor) -> tuple[Tensor, Tensor]:
        """β (..., 2C) -> gain 1 + β[..., :C] and bias β[..., C:], (..., C) each."""
        return 1 + beta[..., : self.n_colors], beta[..., self.n_colors :]

    def _n_input_colors(self, n_channels: int) -> int:
        # A sprite adds its mask and its noise canvas to its colours (the candidate renderer
        # leaves the canvas out), a background nothing.
        if n_channels - self.n_colors in (0, 1, 2):
            return self.n_colors
        if n_channels - 1 in (0, 1, 2):
            return 1
        raise ValueError(
            f"color transform: cannot tell the colour channels of a {n_channels}-channel input "
            f"with n_colors={self.n_colors}"
        )

    def __call__(self, x: Tensor, beta: Tensor, out_size: tuple[int, int]) -> Tensor:
        """x (..., Ch, h, w) and β (..., 2C): their leading dimensions broadcast, so that one
        sprite stack (1, K, Ch, h, w) takes the colours of G images (G, 1, 2C) at once."""
        n_in = self._n_input_colors(x.size(-3))
        colors, rest = x[..., :n_in, :, :], x[..., n_in:, :, :]
        if n_in != self.n_colors:
            colors = colors.expand(*colors.shape[:-3], self.n_colors, *colors.shape[-2:])
        gain, bias = self.gain_bias(beta)  # (..., C) each
        colors = self.clamp(gain[..., None, None] * colors + bias[..., None, None])
        rest = rest.expand(*colors.shape[:-3], *rest.shape[-3:])
        return torch.cat([colors, rest], dim=-3)

    def describe(self, beta: Tensor, out_size: tuple[int, int]) -> dict:
        gain, bias = self.gain_bias(beta[None])
        return {**super().describe(beta, out_size), "gain": rounded(gain[0]), "bias": rounded(bias[0])}


def _identity_grid(out_size: tuple[int, int], device, dtype) -> Tensor:
    """Normalised pixel-centre coordinates of an out_size image, (H*W, 2) as (x, y), x fastest.

    Same values as `F.affine_grid` with the identity and `align_corners=False`.
    """
    height, width = out_size
    ys, xs = pixel_centres(height, device, dtype), pixel_centres(width, device, dtype)  # (H,), (W,)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # (H, W) each
    return torch.stack([grid_x, grid_y], dim=-1).reshape(-1, 2)  # (H*W, 2)


class _AffineFamily(SpatialTransform):
    """Spatial modules whose β gives a 2x3 affine matrix A (input = A [q; 1])."""

    def affine_matrix(self, beta: Tensor) -> Tensor:
        raise NotImplementedError

    def axis_maps(self, beta: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """x_in = a x + tx and y_in = d y + ty, as (a, tx, d, ty) (N,) each, for a module whose
        matrix never mixes the axes (`axis_aligned`)."""
        theta = self.affine_matrix(beta)  # (N, 2, 3)
        return theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2]

    def sampling_matrix(self, beta: Tensor) -> Tensor:
        theta = self.affine_matrix(beta)  # (N, 2, 3)
        last_row = torch.tensor([0.0, 0.0, 1.0], device=beta.device, dtype=beta.dtype).expand(theta.size(0), 1, 3)
        return torch.cat([theta, last_row], dim=1)  # (N, 3, 3)

    def sampling_grid(self, beta: Tensor, out_size: tuple[int, int]) -> Tensor:
        """The grid of `F.affine_grid(theta, align_corners=False)`, written out elementwise:
        its batched (H*W, 3) @ (3, 2) products are too small for a matrix kernel and took
        8% of a CPU training step."""
        theta = self.affine_matrix(beta)  # (N, 2, 3)
        base = _identity_grid(out_size, beta.device, beta.dtype)  # (H*W, 2)
        x, y = base[:, 0, None], base[:, 1, None]  # (H*W, 1) each
        grid = theta[:, None, :, 0] * x + theta[:, None, :, 1] * y + theta[:, None, :, 2]  # (N, H*W, 2)
        return grid.view(theta.size(0), *out_size, 2)  # (N, H, W, 2)


@TRANSFORMS.register("affine", "aff")
class AffineTransform(_AffineFamily):
    """A = [[1, 0, 0], [0, 1, 0]] + β as 2x3 (d = 6)."""

    name = "affine"

    def count_params(self) -> int:
        return 6

    def affine_matrix(self, beta: Tensor) -> Tensor:
        identity = torch.eye(2, 3, device=beta.device, dtype=beta.dtype)
        return identity + beta.reshape(-1, 2, 3)  # (N, 2, 3)


@TRANSFORMS.register("position", "pos")
class PositionTransform(_AffineFamily):
    """Isotropic scale and translation, A = [[1 + e^s, 0, tx], [0, 1 + e^s, ty]] (d = 3).

    At β = 0 the matrix is 2I, not the identity: the sprite is drawn at half the output
    extent, centred, which leaves room to move it; the paper's results rely on this start.
    """

    name = "position"
    axis_aligned = True
    conventions = {
        "position": "A = [[1+e^s, 0, tx], [0, 1+e^s, ty]]: extent = 1/(1+e^s), offset_px = -(tx, ty)/(1+e^s) * "
        "(W/2, H/2); at the head's start (beta = 0) a sprite spans half the canvas, centred",
    }

    def count_params(self) -> int:
        return 3

    def affine_matrix(self, beta: Tensor) -> Tensor:
        scale = 1 + beta[:, 0].exp()  # (N,)
        zero = torch.zeros_like(scale)
        row_x = torch.stack([scale, zero, beta[:, 1]], dim=1)  # (N, 3)
        row_y = torch.stack([zero, scale, beta[:, 2]], dim=1)  # (N, 3)
        return torch.stack([row_x, row_y], dim=1)  # (N, 2, 3)

    def matrix_terms(self, beta: Tensor) -> dict:
        return {"extent": round(1 / (1 + math.exp(float(beta[0]))), 5)}


@TRANSFORMS.register("similarity", "sim")
class SimilarityTransform(_AffineFamily):
    """Rotation, scale and translation, A = [[1 + a, -b, tx], [b, 1 + a, ty]] (d = 4)."""

    name = "similarity"

    def count_params(self) -> int:
        return 4

    def affine_matrix(self, beta: Tensor) -> Tensor:
        a, b, tx, ty = beta.unbind(dim=1)  # (N,) each
        row_x = torch.stack([1 + a, -b, tx], dim=1)  # (N, 3)
        row_y = torch.stack([b, 1 + a, ty], dim=1)  # (N, 3)
        return torch.stack([row_x, row_y], dim=1)  # (N, 2, 3)


@TRANSFORMS.register("projective", "proj", "homography")
class ProjectiveTransform(SpatialTransform):
    """Homography H = I_3 + β as 3x3 (d = 9); q samples the projection of H [q; 1]."""

    name = "projective"

    def count_params(self) -> int:
        return 9

    def sampling_matrix(self, beta: Tensor) -> Tensor:
        return torch.eye(3, device=beta.device, dtype=beta.dtype) + beta.reshape(-1, 3, 3)  # (N, 3, 3)

    def sampling_grid(self, beta: Tensor, out_size: tuple[int, int]) -> Tensor:
        homography = self.sampling_matrix(beta)  # (N, 3, 3)
        points = _identity_grid(out_size, beta.device, beta.dtype)  # (HW, 2)
        points = torch.cat([points, torch.ones_like(points[:, :1])], dim=1)  # (HW, 3)
        mapped = points @ homography.transpose(1, 2)  # (N, HW, 3)
        depth = mapped[..., 2:]  # (N, HW, 1)
        # Keep the sign of the depth but never divide by (almost) zero.
        depth = torch.where(depth >= 0, depth.clamp(min=_PROJECTIVE_EPS), depth.clamp(max=-_PROJECTIVE_EPS))
        return (mapped[..., :2] / depth).view(-1, *out_size, 2)  # (N, H, W, 2)


def _tps_kernel(sq_dist: Tensor) -> Tensor:
    """U(r) = r^2 log r written with r^2 (= 0.5 r^2 log r^2), with U(0) = 0."""
    safe = torch.where(sq_dist > 0, sq_dist, torch.ones_like(sq_dist))
    return 0.5 * sq_dist * safe.log()


def _tps_design(points: Tensor, centres: Tensor) -> Tensor:
    """Rows [U(|p - c_1|), ..., U(|p - c_n|), 1, p_x, p_y] for each point p, (P, n + 3)."""
    sq_dist = (points[:, None, :] - centres[None, :, :]).pow(2).sum(-1)  # (P, n)
    ones = torch.ones_like(points[:, :1])
    return torch.cat([_tps_kernel(sq_dist), ones, points], dim=1)  # (P, n + 3)


@TRANSFORMS.register("tps", "thinplatespline")
class ThinPlateSplineTransform(SpatialTransform):
    """Thin-plate spline warp driven by a G x G control grid (d = 2 G^2).

    Control points (the spline's centres) form a regular G x G grid over [-1, 1]^2 listed
    row by row, x varying fastest; β viewed as (G^2, 2) displaces each as (dx, dy). The
    spline f (kernel U plus an affine part) satisfies f(target_i) = target_i + β_i, and
    f(q) is where output pixel q samples the input; β = 0 gives exactly the identity.
    """

    name = "tps"

    def count_params(self) -> int:
        if self.grid_size < 2:
            raise ConfigError(f"tps: grid_size must be at least 2, got {self.grid_size}")
        return 2 * self.grid_size**2

    def control_points(self, device=None, dtype=torch.float32) -> Tensor:
        """Target control points (G^2, 2) as (x, y), row by row with x fastest."""
        coords = torch.linspace(-1, 1, self.grid_size, device=device, dtype=dtype)
        grid_y, grid_x = torch.meshgrid(coords, coords, indexing="ij")  # (G, G) each
        return torch.stack([grid_x, grid_y], dim=-1).reshape(-1, 2)  # (G^2, 2)

    def sampling_grid(self, beta: Tensor, out_size: tuple[int, int]) -> Tensor:
        points = _identity_grid(out_size, beta.device, beta.dtype)  # (HW, 2)
        return self.warp_points(beta, points).view(-1, *out_size, 2)  # (N, H, W, 2)

    def warp_points(self, beta: Tensor, points: Tensor) -> Tensor:
        """Evaluate the spline of each β at the (P, 2) points, giving (N, P, 2)."""
        targets = self.control_points(beta.device, beta.dtype)  # (n, 2), n = G^2
        n = targets.size(0)
        sources = targets + beta.reshape(-1, n, 2)  # (N, n, 2)
        # System [[K, P], [P^T, 0]] [w; a] = [sources; 0], one matrix shared by the batch.
        # solve_ex skips the singularity check that would make the host wait for a GPU.
        design = _tps_design(targets, targets)  # (n, n + 3)
        side = torch.cat([design[:, n:].T, torch.zeros(3, 3, device=beta.device, dtype=beta.dtype)], dim=1)
        system = torch.cat([design, side], dim=0)  # (n + 3, n + 3)
        rhs = F.pad(sources, (0, 0, 0, 3))  # (N, n + 3, 2)
        coeffs = torch.linalg.solve_ex(system.expand(rhs.size(0), -1, -1), rhs).result  # (N, n + 3, 2)
        return _tps_design(points, targets) @ coeffs  # (P, n + 3) @ (N, n + 3, 2) -> (N, P, 2)

    def describe(self, beta: Tensor, out_size: tuple[int, int]) -> dict:
        """Adds the control grid's size and how far its points move, in output pixels."""
        H, W = out_size
        shift = beta.view(-1, 2) * torch.tensor([W / 2, H / 2], dtype=beta.dtype)  # (G^2, 2)
        norms = shift.norm(dim=1)
        return {
            **super().describe(beta, out_size),
            "control_grid": self.grid_size,
            "mean_shift_px": round(float(norms.mean()), 3),
            "max_shift_px": round(float(norms.max()), 3),
        }


@TRANSFORMS.register("morpho", "morphological")
class MorphologicalTransform(Transform):
    """Learnable smooth dilation / erosion of the mask over a k x k window (d = k^2 + 1).

    With p = β + param_offset(), α = p[0] and w = sigmoid(p[1:]):
    out = Σ_j x_j w_j e^{α x_j} / Σ_j w_j e^{α x_j} over the zero-padded neighbourhood.
    α >> 0 tends to a max (dilation), α << 0 to a min (erosion); the offset puts almost all
    weight on the centre so that a zero head output nearly leaves the mask alone.
    """

    name = "morpho"
    kind = "mask"

    def count_params(self) -> int:
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ConfigError(f"morpho: kernel_size must be a positive odd number, got {self.kernel_size}")
        return self.kernel_size**2 + 1

    def param_offset(self) -> Tensor:
        logits = torch.full((self.kernel_size**2,), -_MORPHO_INIT_LOGIT)
        logits[self.kernel_size**2 // 2] = _MORPHO_INIT_LOGIT
        return torch.cat([torch.zeros(1), logits])  # (k^2 + 1,)

    def _smooth_extremum(self, x: Tensor, params: Tensor) -> Tensor:
        n, channels, height, width = x.shape
        k = self.kernel_size
        patches = F.unfold(x, k, padding=k // 2).view(n, channels, k * k, height * width)  # (N, c, k^2, HW)
        alpha = params[:, :1, None, None]  # (N, 1, 1, 1)
        log_w = F.logsigmoid(params[:, 1:])[:, None, :, None]  # (N, 1, k^2, 1)
        # softmax subtracts the max of the exponent, which keeps large |α| finite.
        attention = torch.softmax(alpha * patches + log_w, dim=2)  # (N, c, k^2, HW)
        return (attention * patches).sum(2).view(n, channels, height, width)

    def __call__(self, x: Tensor, beta: Tensor, out_size: tuple[int, int]) -> Tensor:
        """beta must already include `param_offset()`."""
        params = beta.to(x.dtype)
        if x.size(1) <= self.n_colors:
            return self._smooth_extremum(x, params)
        mask_idx = self.n_colors
        mask = self._smooth_extremum(x[:, mask_idx : mask_idx + 1], params)  # (N, 1, h, w)
        return torch.cat([x[:, :mask_idx], mask, x[:, mask_idx + 1 :]], dim=1)

    def describe(self, beta: Tensor, out_size: tuple[int, int]) -> dict:
        alpha = float(beta[0])
        effect = "dilation" if alpha > 0 else "erosion" if alpha < 0 else "none"
        return {**super().describe(beta, out_size), "alpha": round(alpha, 4), "effect": effect}


def parse_sequence(name: str) -> list[str]:
    """Split a sequence name like "color_projective_tps" into canonical module names."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"transformation sequence must be a non-empty string, got {name!r}")
    return [TRANSFORMS.get(part).name for part in name.split("_")]


def build_transform(name: str, **kwargs) -> Transform:
    """Instantiate one module by name or alias; kwargs go to its constructor."""
    return TRANSFORMS.get(name)(**kwargs)


def describe_conventions() -> dict[str, str]:
    """What the terms of every registered module's `describe` mean, by key: spatial modules
    first (the text they share, then each one's own), then the others, in registration order."""
    texts = {}
    for module in sorted(TRANSFORMS.factories(), key=lambda cls: cls.kind != "spatial"):
        for cls in reversed(module.__mro__):
            texts.update(vars(cls).get("conventions", {}))
    return texts
