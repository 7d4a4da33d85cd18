"""A transformation sequence (e.g. `color_projective_tps`) with its heads and curriculum.

One `TransformSequence` serves `n_copies` independent copies of the same sequence: the
sprite transformer has one copy per (layer, sprite), the layer transformer one per layer,
the background transformer one per background. Copy `i` of every module is head `i` of that
module's `HeadBank`.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .candidate_windows import axis_weights, covered_span, window_rows
from .clamp import ClampFn
from .heads import HeadBank
from .transforms import build_transform, parse_sequence


def resize(x: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resample to out_size with the same sampling convention as the warps."""
    if tuple(x.shape[-2:]) == tuple(out_size):
        return x
    return F.interpolate(x, size=out_size, mode="bilinear", align_corners=False)


class TransformSequence(nn.Module):
    def __init__(
        self,
        sequence: str,
        n_copies: int,
        in_features: int,
        n_colors: int,
        clamp: ClampFn,
        padding_mode: str = "zeros",
        grid_size: int = 4,
        kernel_size: int = 3,
        n_hidden_layers: int = 2,
        norm_layer: str | None = None,
        milestones=False,
    ):
        super().__init__()
        self.sequence = sequence
        self.names = parse_sequence(sequence)
        self.transforms = [
            build_transform(
                name,
                n_colors=n_colors,
                clamp=clamp,
                padding_mode=padding_mode,
                grid_size=grid_size,
                kernel_size=kernel_size,
            )
            for name in self.names
        ]
        self.heads = nn.ModuleList(
            HeadBank(n_copies, in_features, t.n_params, n_hidden_layers, norm_layer) if t.n_params > 0 else None
            for t in self.transforms
        )
        for i, t in enumerate(self.transforms):
            offset = t.param_offset()
            self.register_buffer(
                f"offset_{i}", offset if offset is not None else torch.zeros(t.n_params), persistent=False
            )
        self.n_copies = n_copies
        self.milestones = list(milestones) if milestones else []
        # Module 0 is always on; module i+1 switches on at epoch milestones[i].
        self.active = [True] + [m == 0 for m in self.milestones] if self.milestones else [True] * len(self.names)

    @property
    def is_identity(self) -> bool:
        return all(t.kind == "identity" for t in self.transforms)

    def advance_curriculum(self, epoch: int) -> list[str]:
        """Switch on the modules whose milestone is reached; return the names switched on."""
        switched = []
        for i, milestone in enumerate(self.milestones):
            if not self.active[i + 1] and epoch >= milestone:
                self.active[i + 1] = True
                switched.append(self.names[i + 1])
        return switched

    def get_extra_state(self):
        return {"active": list(self.active)}

    def set_extra_state(self, state):
        self.active = list(state["active"])

    def predict(self, features: torch.Tensor) -> list[torch.Tensor | None]:
        """features (B, F) -> per module β (n_copies, B, d), None for parameter-free modules."""
        betas = []
        for i, head in enumerate(self.heads):
            betas.append(None if head is None else head(features) + getattr(self, f"offset_{i}"))
        return betas

    def forward(
        self, x: torch.Tensor, betas: list[torch.Tensor | None], out_size: tuple[int, int], groups: int = 1
    ) -> torch.Tensor:
        """Apply the active modules left to right.

        x (N, Ch, h, w), betas[i] (N / groups, d) -> (N, Ch', *out_size): each run of `groups`
        consecutive inputs shares one β. Spatial modules then warp a group as one image of
        groups * Ch channels: one sampling grid per group instead of one per input (the
        candidate sprites of a layer share the layer's placement). Inactive modules are the
        identity; a final resample guarantees out_size when no active module resized.
        """
        for transform, beta, active in zip(self.transforms, betas, self.active):
            if not active or transform.kind == "identity":
                continue
            if groups == 1:
                x = transform(x, beta, out_size)
            elif transform.kind == "spatial":
                n, ch = x.shape[:2]
                x = transform(x.reshape(n // groups, groups * ch, *x.shape[2:]), beta, out_size)
                x = x.view(n, ch, *out_size)
            else:
                x = transform(x, beta.repeat_interleave(groups, 0), out_size)
        return resize(x, out_size)

    def forward_shared(self, x: torch.Tensor, betas: list[torch.Tensor | None], out_size: tuple[int, int]):
        """The same N inputs x (N, Ch, h, w) transformed by each of G parameter sets, betas[i]
        (G, d) -> (G, N, Ch, *out_size).

        What `forward(x repeated G times, betas, out_size, groups=N)` gives, bit for bit,
        without first copying the inputs G times: a module that broadcasts (colour) takes the
        N inputs against the G parameter sets at once, a spatial module warps a group's N
        inputs as one image. The candidate renderer's path: every sprite in every layer.
        """
        groups = next(b.shape[0] for b in betas if b is not None)
        y = x.unsqueeze(0)  # (1, N, Ch, h, w) until a module gives it its G groups
        for transform, beta, active in zip(self.transforms, betas, self.active):
            if not active or transform.kind == "identity":
                continue
            n, ch, h, w = y.shape[1:]
            if transform.broadcasts:
                y = transform(y, beta[:, None], out_size)
            elif transform.kind == "spatial":
                flat = y.expand(groups, -1, -1, -1, -1).reshape(groups, n * ch, h, w)
                y = transform(flat, beta, out_size).view(groups, n, ch, *out_size)
            else:
                flat = y.expand(groups, -1, -1, -1, -1).reshape(groups * n, ch, h, w)
                y = transform(flat, beta.repeat_interleave(n, 0), out_size).view(groups, n, *y.shape[2:])
        n, ch = y.shape[1:3]
        y = y.expand(groups, -1, -1, -1, -1).reshape(groups * n, ch, *y.shape[-2:])
        return resize(y, out_size).view(groups, n, ch, *out_size)

    def window_module(self) -> int | None:
        """The module that places the input, when the active modules are broadcasting ones
        followed by one axis-aligned spatial module (`color_position`): what forward_windows
        needs. None otherwise."""
        active = [i for i, t in enumerate(self.transforms) if self.active[i] and t.kind != "identity"]
        if not active:
            return None
        *before, last = active
        if getattr(self.transforms[last], "axis_aligned", False) and all(self.transforms[i].broadcasts for i in before):
            return last
        return None

    def forward_windows(self, x: torch.Tensor, betas: list[torch.Tensor | None], out_size: tuple[int, int]):
        """forward_shared over the windows the inputs reach (candidate_windows.py): x (N, Ch, h, w),
        betas[i] (G, d) -> transformed (G, N, Ch, h', w'), the input's frame, ones over it
        warped (G, h', w'), and each window's first row and column (G,). None when the
        sequence is not one window_module() accepts.

        The same values as forward_shared cut at the windows, up to float rounding: both blend
        the same two input pixels per axis with the same weights."""
        placing = self.window_module()
        if placing is None:
            return None
        y = x.unsqueeze(0)  # (1, N, Ch, h, w) until a module gives it its G groups
        for transform, beta, active in zip(self.transforms[:placing], betas, self.active):
            if active and transform.kind != "identity":
                y = transform(y, beta[:, None], out_size)
        groups = betas[placing].shape[0]
        y = y.expand(groups, -1, -1, -1, -1)
        n, ch, h, w = y.shape[1:]
        scale_x, shift_x, scale_y, shift_y = self.transforms[placing].axis_maps(betas[placing])
        across = axis_weights(scale_x, shift_x, out_size[1], w)  # (G, W, w)
        down = axis_weights(scale_y, shift_y, out_size[0], h)  # (G, H, h)
        left, width = covered_span(across)
        top, height = covered_span(down)
        across, down = window_rows(across, left, width), window_rows(down, top, height)  # (G, w', w), (G, h', h)
        y = y.reshape(groups, n * ch * h, w) @ across.transpose(1, 2)  # (G, N Ch h, w')
        y = torch.matmul(down[:, None], y.view(groups, n * ch, h, width))  # (G, N Ch, h', w')
        frame = down.sum(2)[:, :, None] * across.sum(2)[:, None, :]  # (G, h', w')
        return y.view(groups, n, ch, height, width), frame, top, left

    def warp_frame(self, betas: list[torch.Tensor | None], in_size: tuple[int, int], out_size: tuple[int, int]):
        """Where each of G parameter sets (betas[i] (G, d)) puts an input's frame, a canvas of
        ones (G, 1, *in_size): only the spatial modules move it -> (G, 1, *out_size)."""
        some_beta = next(b for b in betas if b is not None)
        frame = some_beta.new_ones(some_beta.shape[0], 1, *in_size)
        for transform, beta, active in zip(self.transforms, betas, self.active):
            if active and transform.kind == "spatial":
                frame = transform(frame, beta, out_size)
        return resize(frame, out_size)
