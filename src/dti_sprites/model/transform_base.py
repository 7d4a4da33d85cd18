"""What every transformation module is: its parameters, tensor layout, coordinates, and how
it describes itself. The modules themselves are in transforms.py.

A module holds no learnable parameter: its parameters β (N, d) are predicted per image by a
head built elsewhere, whose last layer starts at zero, so β = 0 must be each module's
starting point (the identity, except `position` and `morpho`: see their classes in
transforms.py).

Tensor layout: x is (N, Ch, h, w); the first `n_colors` channels are colour; a sprite then
carries its mask and its noise canvas (Ch = n_colors + 2; n_colors + 1 in the candidate
renderer, which warps the canvas once per group instead), a background nothing more
(Ch = n_colors). Spatial modules use the normalised coordinates of `F.affine_grid` with
`align_corners=False`: x (columns) then y (rows), both in [-1, 1] over the pixel extents, and
map every *output* coordinate q to the *input* coordinate it samples.

A module also describes itself to a person reading a decomposition (outputs/decompose.py):
`describe` gives its parameters in plain terms, `sampling_matrix` its map as a 3x3 matrix where
it is one, and `conventions` says what its terms mean.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .canvas_geometry import canvas_terms, rounded
from .clamp import ClampFn


def pixel_centres(n: int, device=None, dtype=None) -> Tensor:
    """Normalised coordinates of the centres of n pixels along one axis, (n,): the convention
    of grid_sample with `align_corners=False`, -1 and 1 at the outer pixel edges."""
    return (2 * torch.arange(n, device=device, dtype=dtype) + 1) / n - 1


class Transform:
    """A parameter-free transformation x -> T_β(x) with β given at call time."""

    name = "identity"
    kind = "identity"
    # True when __call__ takes x (..., Ch, h, w) with β (..., d), broadcasting the leading
    # dimensions; otherwise x is (N, Ch, h, w) and β (N, d).
    broadcasts = False
    # What the terms of `describe` mean, by key; a subclass lists only the keys it adds.
    conventions: dict[str, str] = {}

    def __init__(
        self,
        n_colors: int,
        clamp: ClampFn,
        padding_mode: str = "zeros",
        grid_size: int = 4,
        kernel_size: int = 3,
    ):
        self.n_colors = n_colors
        self.clamp = clamp
        self.padding_mode = padding_mode
        self.grid_size = grid_size
        self.kernel_size = kernel_size
        self.n_params = self.count_params()

    def count_params(self) -> int:
        """d, the size of β (may depend on n_colors, grid_size or kernel_size)."""
        return 0

    def __call__(self, x: Tensor, beta: Tensor, out_size: tuple[int, int]) -> Tensor:
        raise NotImplementedError

    def param_offset(self) -> Tensor | None:
        """Constant the caller adds to β before the call (None: nothing to add)."""
        return None

    def sampling_matrix(self, beta: Tensor) -> Tensor | None:
        """β (N, d) -> M (N, 3, 3) when the module samples, for each output coordinate q, the
        input at the projection of M [q; 1]; None when it is no such map of the plane."""
        return None

    def describe(self, beta: Tensor, out_size: tuple[int, int]) -> dict:
        """This module's terms for one image, JSON-ready: β (d,) float64 as the heads give it
        (`param_offset()` included), out_size (H, W) the module's output canvas."""
        return {"module": self.name, "beta": rounded(beta, 5)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_params={self.n_params})"


class SpatialTransform(Transform):
    """Warps all channels together by bilinear sampling on a grid of size out_size."""

    kind = "spatial"
    # True when the map never mixes x and y (scale and translation): rows and columns are then
    # sampled independently (candidate_windows.py).
    axis_aligned = False
    conventions = {
        "spatial": "a spatial module samples, for each output coordinate q, the input at A q (normalised coordinates "
        "in [-1, 1] over the pixel extents, grid_sample with align_corners=false): its input therefore "
        "appears at A^-1 of its own coordinates. extent_xy = fraction of the output canvas the whole input "
        "canvas spans; offset_px = where the input's centre lands, in output pixels from the canvas centre",
    }

    def sampling_grid(self, beta: Tensor, out_size: tuple[int, int]) -> Tensor:
        """Input coordinates sampled by every output pixel, (N, H_out, W_out, 2) as (x, y)."""
        raise NotImplementedError

    def __call__(self, x: Tensor, beta: Tensor, out_size: tuple[int, int]) -> Tensor:
        grid = self.sampling_grid(beta.to(x.dtype), out_size)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode=self.padding_mode, align_corners=False)

    def describe(self, beta: Tensor, out_size: tuple[int, int]) -> dict:
        """Adds, for a module with a sampling matrix, where it puts its input (`canvas_terms`)
        and the matrix itself."""
        terms = super().describe(beta, out_size)
        matrix = self.sampling_matrix(beta[None])
        if matrix is None:
            return terms
        return {
            **terms,
            **canvas_terms(matrix[0], out_size),
            **self.matrix_terms(beta),
            "matrix": rounded(matrix[0], 5),
        }

    def matrix_terms(self, beta: Tensor) -> dict:
        """Terms of this module's own parametrisation, listed before its matrix (β (d,))."""
        return {}
