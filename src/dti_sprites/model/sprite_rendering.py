"""Drawing sprites and backgrounds with their predicted transformations (docs/method.md
§1.4, 1.5, 1.7): the rendering half of the DTI-Sprites model, kept apart from its construction,
selection and forward (sprites_model.py).

Layout: candidates (L, N, B, C, H, W) and masks (L, N, B, 1, H, W) for sprite indices
(L, N, B); backgrounds (M, B, C, H, W). A sprite stack is (K', C+2, h, w): clamped colours,
mask, and the noise canvas, ones over the sprite's frame (zeros for the empty sprite).
"""

import torch

from .candidate_windows import Windows


class SpriteRendering:
    """Rendering methods of `DTISprites`, which sets what they read: K, L, M, C, img_size,
    sprite_size, sprite_out_size, prototypes, masks, backgrounds, clamp, inject_noise,
    add_empty_sprite, sprites_frozen, training, and the three transformers."""

    def _noise_active(self) -> bool:
        return self.training and self.inject_noise > 0

    def _sprite_stack(self) -> torch.Tensor:
        """Clamped appearances, masks and a canvas channel: (K', C+2, h, w)."""
        protos, masks = self.prototypes, self.masks
        if self.sprites_frozen:
            protos, masks = protos.detach(), masks.detach()
        masks = masks if self._noise_active() else self.clamp(masks)
        stack = torch.cat([self.clamp(protos), masks, torch.ones_like(masks)], 1)
        if self.add_empty_sprite:
            stack = torch.cat([stack, torch.zeros_like(stack[:1])], 0)
        return stack

    def _gather_sprite_betas(self, beta: torch.Tensor | None, idx: torch.Tensor) -> torch.Tensor | None:
        """(L*K, B, d) -> (L*N*B, d) for sprite indices idx (L, N, B); the empty sprite gets zeros."""
        if beta is None:
            return None
        L, N, B = idx.shape
        beta = beta.view(L, self.K, B, -1)
        if self.add_empty_sprite:
            beta = torch.cat([beta, beta.new_zeros(L, 1, B, beta.shape[-1])], 1)  # (L, K', B, d)
        picked = beta.gather(1, idx.unsqueeze(-1).expand(-1, -1, -1, beta.shape[-1]))  # (L, N, B, d)
        return picked.reshape(L * N * B, -1)

    def render_sprites(
        self,
        betas: dict,
        idx: torch.Tensor,
        noise: torch.Tensor | None,
        stack: torch.Tensor | None = None,
        sprites: torch.Tensor | None = None,
    ):
        """Transformed sprites idx (L, N, B) -> colours (L, N, B, C, H, W), masks (L, N, B, 1, H, W).

        stack: the (K', C+2, h, w) sprite stack when the caller already built it. sprites: with
        N = 1, the (L*B, C+2, h, w) images to draw in place of the stack's rows idx (the learned
        selection's gradient carrier); idx still picks the heads' outputs and the noise.
        """
        L, N, B = idx.shape
        sprite_betas = [self._gather_sprite_betas(b, idx) for b in betas["sprite"]]
        # No per-sprite warp: the N sprites of a (layer, image) share that layer's placement, so
        # they are picked (layer, image)-major and warped together, one sampling grid per group.
        shared_warp = self._warps_per_layer(betas)
        if sprites is None:
            stack = self._sprite_stack() if stack is None else stack
            x = pick_rows(stack, idx.transpose(1, 2) if shared_warp else idx)  # (L*B*N or L*N*B, C+2, h, w)
        else:
            x = sprites  # N = 1: both orders are (L*B, C+2, h, w)
        x = self.sprite_transformer(x, sprite_betas, self.sprite_out_size)
        if shared_warp:
            layer_betas = [None if b is None else b.reshape(L * B, -1) for b in betas["layer"]]  # (L*B, d)
            x = self.layer_transformer(x, layer_betas, self.img_size, groups=N)
            x = x.view(L, B, N, self.C + 2, *self.img_size).transpose(1, 2)  # (L, N, B, C+2, H, W), a view
        else:
            if self.layer_transformer is not None:
                layer_betas = [
                    None if b is None else b.unsqueeze(1).expand(-1, N, -1, -1).reshape(L * N * B, -1)
                    for b in betas["layer"]
                ]  # (L, B, d) -> (L*N*B, d)
                x = self.layer_transformer(x, layer_betas, self.img_size)
            x = x.view(L, N, B, self.C + 2, *self.img_size)
        # One split, not three slices: a slice's backward writes a full-size zero tensor for each piece.
        colors, masks, canvas = x.split([self.C, 1, 1], dim=3)
        if noise is not None:
            masks = self.clamp(masks + canvas * self._mask_noise(noise)[idx])
        return colors, masks

    def _mask_noise(self, noise: torch.Tensor) -> torch.Tensor:
        """Uniform noise in [0, 1) (K', 1, H, W) -> what it adds to each sprite's mask inside the
        sprite's frame, uniform in [-inject_noise, inject_noise)."""
        amplitude = self.inject_noise
        return 2 * amplitude * noise - amplitude

    def render_candidates(
        self, betas: dict, batch: int, noise: torch.Tensor | None = None, stack: torch.Tensor | None = None
    ):
        """Every candidate sprite (K', the empty one included) in every layer of `batch` images:
        colours (L, K', B, C, H, W), masks (L, K', B, 1, H, W). What selection compares."""
        stack = self._sprite_stack() if stack is None else stack
        if self._warps_per_layer(betas):
            return self._render_all_per_layer(betas, batch, noise, stack)
        device = self.prototypes.device
        candidates = torch.arange(self.n_candidates, device=device).view(1, -1, 1).expand(self.L, -1, batch)
        return self.render_sprites(betas, candidates, noise, stack)

    def _warps_per_layer(self, betas: dict) -> bool:
        """True when only the layer's transformation moves a sprite: the sprites of a (layer,
        image) then share one placement."""
        return self.layer_transformer is not None and all(b is None for b in betas["sprite"])

    def _render_all_per_layer(self, betas: dict, batch: int, noise: torch.Tensor | None, stack: torch.Tensor):
        """render_sprites over every candidate, bit for bit, in a third less time on a CPU
        (the demo: 100 -> 70 ms): the stack is not copied per (layer, image) before its colours
        are set, and the noise canvas, ones over each sprite's frame, is warped once per
        (layer, image) rather than once per sprite."""
        L, K, B, C = self.L, self.n_candidates, batch, self.C
        layer_betas = [None if b is None else b.reshape(L * B, -1) for b in betas["layer"]]  # (L*B, d)
        x = self.layer_transformer.forward_shared(stack[:, :-1], layer_betas, self.img_size)  # (L*B, K', C+1, H, W)
        x = x.view(L, B, K, C + 1, *self.img_size).transpose(1, 2)  # (L, K', B, C+1, H, W), a view
        colors, masks = x.split([C, 1], dim=3)
        if noise is not None:
            frame = self.layer_transformer.warp_frame(layer_betas, self.sprite_size, self.img_size)
            frame = frame.view(L, 1, B, 1, *self.img_size)
            # The canvas channel is constant over a sprite (1; 0 for the empty sprite).
            shift = stack[:, -1:, :1, :1] * self._mask_noise(noise)  # (K', 1, H, W)
            masks = self.clamp(masks + frame * shift[None, :, None])
        return colors, masks

    def render_candidate_windows(self, betas: dict, batch: int, noise: torch.Tensor | None, stack: torch.Tensor):
        """render_candidates over each (layer, image)'s window only (candidate_windows.py):
        colours (L, K', B, C, h', w'), masks (L, K', B, 1, h', w') and their Windows. None where
        that does not apply: not on a CPU, sprites that transform themselves, or a layer
        placement that rotates or bends. What it saves the demo: README, "Speed"."""
        if stack.device.type != "cpu" or not self._warps_per_layer(betas):
            return None
        L, K, B, C = self.L, self.n_candidates, batch, self.C
        layer_betas = [None if b is None else b.reshape(L * B, -1) for b in betas["layer"]]  # (L*B, d)
        drawn = self.layer_transformer.forward_windows(stack[:, :-1], layer_betas, self.img_size)
        if drawn is None:
            return None
        x, frame, top, left = drawn
        size = tuple(x.shape[-2:])
        windows = Windows(top.view(L, B), left.view(L, B), size, self.img_size)
        x = x.view(L, B, K, C + 1, *size).transpose(1, 2)  # (L, K', B, C+1, h', w'), a view
        colors, masks = x.split([C, 1], dim=3)
        if noise is not None:
            shift = windows.crop_all(stack[:, -1:, :1, :1] * self._mask_noise(noise))  # (L, K', B, 1, h', w')
            masks = self.clamp(masks + frame.view(L, 1, B, 1, *size) * shift)
        return colors, masks, windows

    def render_backgrounds(self, betas: dict, batch: int) -> torch.Tensor | None:
        """(M, B, C, H, W) transformed backgrounds."""
        if not self.M:
            return None
        x = self.clamp(self.backgrounds).unsqueeze(1).expand(-1, batch, -1, -1, -1).flatten(0, 1)
        bkg_betas = [None if b is None else b.flatten(0, 1) for b in betas["bkg"]]
        return self.bkg_transformer(x, bkg_betas, self.img_size).view(self.M, batch, self.C, *self.img_size)


def pick_rows(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows idx (any shape, read in row-major order) of table (K, ...) -> (idx.numel(), ...).

    What table[idx].flatten(0, idx.dim() - 1) computes, with a backward that sums the
    gradients of a row picked many times in a fixed order. Advanced indexing's CPU backward
    sums them with atomic adds from racing threads: the last bits then vary from run to run,
    and two runs with one seed drift apart (issue #14).
    """
    return table.index_select(0, idx.flatten())
