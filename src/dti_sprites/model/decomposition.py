"""What the model returns for a batch: its reconstruction, loss, the layers it chose and the
head outputs it used (the contract between the model, the trainer and the evaluation)."""

from dataclasses import dataclass

import torch


@dataclass
class Decomposition:
    """What the model explains of a batch of images, and the head outputs it used, so that no
    caller runs the encoder again. The object_* views leave the background layer out."""

    recon: torch.Tensor  # (B, C, H, W)
    loss: torch.Tensor  # (B,) per-image mean squared error
    sprite_idx: torch.Tensor  # (L, B) chosen sprite per object layer (K = the empty sprite)
    bkg_idx: torch.Tensor | None  # (B,) chosen background
    colors: torch.Tensor  # (L', B, C, H, W) chosen layers, background first when present
    masks: torch.Tensor  # (L', B, 1, H, W)
    occlusion: torch.Tensor  # (B, L', L')
    has_background: bool
    betas: dict | None = None  # head outputs, as `DTISprites.predict` returns them
    selection_penalty: torch.Tensor | None = None  # the learned selection's usage terms (a scalar)

    def objective(self) -> torch.Tensor:
        """What training minimises: the batch's mean loss, plus the learned selection's usage terms."""
        loss = self.loss.mean()
        return loss if self.selection_penalty is None else loss + self.selection_penalty

    @property
    def first_object(self) -> int:
        """Index of the first object layer in colors, masks and occlusion (after the background)."""
        return int(self.has_background)

    @property
    def object_colors(self) -> torch.Tensor:
        return self.colors[self.first_object :]  # (L, B, C, H, W)

    @property
    def object_masks(self) -> torch.Tensor:
        return self.masks[self.first_object :]  # (L, B, 1, H, W)

    @property
    def object_occlusion(self) -> torch.Tensor:
        return self.occlusion[:, self.first_object :, self.first_object :]  # (B, L, L)

    @property
    def background(self) -> torch.Tensor | None:
        return self.colors[0] if self.has_background else None  # (B, C, H, W)
