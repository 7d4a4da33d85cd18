"""What the learned selection sees of the object a layer places (`selection_readout: position`).

Read from the encoder's pooled features, the selection head learned next to nothing about which
sprite an object is (its first choice agreed with greedy search's on 1-27% of layers, chance
5%): pooling mixes the objects of an image. Here each layer also reads the encoder's feature map
(before pooling) at the centre where its layer transformation puts the sprite, and one MLP,
shared by the layers (what a sprite looks like does not depend on its layer), maps that local
feature to logits over the candidates. Its last layer starts at zero, so the head's logits are
unchanged at the start. The centres are read without gradient: the readout learns to recognise,
not to move the layers.
"""

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .heads import HeadBank
from .transform_sequence import TransformSequence


def check_readable(layer_transformer: TransformSequence | None) -> None:
    """The readout needs the layers' placement as a matrix: a spatial module of the affine or
    projective family in `transformation_sequence_layer`."""
    spatial = [] if layer_transformer is None else [t for t in layer_transformer.transforms if t.kind == "spatial"]
    if not spatial or any(t.sampling_matrix(torch.zeros(1, t.n_params)) is None for t in spatial):
        raise ConfigError(
            "model.selection_readout: position reads each layer's object where its layer transformation "
            "places the sprite; model.transformation_sequence_layer must then hold position, similarity, "
            "affine or projective modules only as its spatial modules, got "
            f"{layer_transformer.sequence if layer_transformer is not None else 'identity'!r}"
        )


@torch.no_grad()
def layer_centres(layer_transformer: TransformSequence, betas: list[torch.Tensor | None]) -> torch.Tensor:
    """Where each layer puts its sprite's centre on the canvas, (L, B, 2) as normalised (x, y).

    The active spatial modules, applied left to right, sample the sprite at M_1 M_2 ... q for a
    canvas point q; the sprite's centre (0, 0) therefore lands at the projection of
    (M_1 M_2 ...)^-1 [0, 0, 1].
    """
    first = next(beta for beta in betas if beta is not None)  # a spatial module has parameters
    L, B = first.shape[:2]
    matrix = None
    for transform, beta, active in zip(layer_transformer.transforms, betas, layer_transformer.active):
        if not active or transform.kind != "spatial":
            continue
        step = transform.sampling_matrix(beta.reshape(L * B, -1))  # (L*B, 3, 3)
        matrix = step if matrix is None else matrix @ step
    if matrix is None:  # no spatial module switched on yet: every sprite is centred
        return torch.zeros(L, B, 2, device=first.device)
    origin = torch.tensor([0.0, 0.0, 1.0], device=matrix.device, dtype=matrix.dtype).expand(matrix.shape[0], 3)
    centre = torch.linalg.solve(matrix, origin)  # (L*B, 3)
    centre = centre[:, :2] / centre[:, 2:]
    return centre.view(L, B, 2)


class PositionReadout(nn.Module):
    """Local features at each layer's centre -> logits (L, B, K') over the candidates."""

    def __init__(self, map_channels: int, n_candidates: int, n_hidden_layers: int, norm_layer: str | None):
        super().__init__()
        self.head = HeadBank(1, map_channels, n_candidates, n_hidden_layers, norm_layer)

    def forward(self, feature_map: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        """feature_map (B, F', h, w), centres (L, B, 2) -> logits (L, B, K')."""
        L, B = centres.shape[:2]
        grid = centres.transpose(0, 1).unsqueeze(2).to(feature_map.dtype)  # (B, L, 1, 2)
        local = F.grid_sample(feature_map, grid, mode="bilinear", padding_mode="border", align_corners=False)
        local = local[..., 0].permute(2, 0, 1).reshape(L * B, -1)  # (L*B, F')
        return self.head(local)[0].view(L, B, -1)
