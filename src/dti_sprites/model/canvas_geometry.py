"""Where a sampling map puts its input, in plain numbers: what `Transform.describe` and the
placement of a decomposed object report.

A spatial module samples, for each output coordinate q, the input at the projection of
M [q; 1] (M a 3x3 matrix, normalised coordinates as in transforms.py). Its input therefore
appears at M^-1 of its own coordinates: these helpers read that inverse map near the input's
centre (where it lands, and its local linear map) and round the results for JSON.
"""

import math

import torch

# Finite-difference step (normalised input units) for the local linear map of projective chains.
JACOBIAN_STEP = 1e-3


def rounded(values, digits: int = 4):
    """A number, tensor or nested list rounded to `digits` decimals, as plain Python numbers."""
    if isinstance(values, torch.Tensor):
        values = values.tolist()
    if isinstance(values, list):
        return [rounded(v, digits) for v in values]
    return round(float(values), digits)


def _inverse_map(matrix: torch.Tensor):
    """input-normalised point -> output-normalised point: the inverse of a sampling map (3, 3)."""
    inverse = torch.linalg.inv(matrix)

    def apply(p: torch.Tensor) -> torch.Tensor:
        q = inverse @ torch.cat([p, p.new_ones(1)])
        return q[:2] / q[2]

    return apply


def input_landing(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the input's centre lands (2,) and the local linear map there (2, 2), by central
    differences of the inverse of the float64 sampling matrix (3, 3)."""
    apply = _inverse_map(matrix)
    centre = apply(torch.zeros(2, dtype=torch.float64))
    cols = []
    for axis in range(2):
        step = torch.zeros(2, dtype=torch.float64)
        step[axis] = JACOBIAN_STEP
        cols.append((apply(step) - apply(-step)) / (2 * JACOBIAN_STEP))
    return centre, torch.stack(cols, 1)


def canvas_terms(matrix: torch.Tensor, out_size: tuple[int, int]) -> dict:
    """Where one spatial module puts its input on its output canvas of out_size (H, W):
    extent per axis (normalised units), rotation and the centre's offset in output pixels."""
    H, W = out_size
    centre, jac = input_landing(matrix)
    return {
        "extent_xy": rounded([jac[:, 0].norm(), jac[:, 1].norm()]),
        "rotation_deg": round(math.degrees(math.atan2(float(jac[1, 0]), float(jac[0, 0]))), 3),
        "offset_px": rounded([centre[0] * W / 2, centre[1] * H / 2], 3),
    }
