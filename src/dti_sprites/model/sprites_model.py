"""The DTI-Sprites image model: sprites placed by predicted transformations, composited in
layers over a background (docs/method.md §1).

Layout: layer-major. Candidates (L, K', B, C, H, W) with K' = K sprites (+1 empty); chosen
layers (L', B, C, H, W) with the background, when there is one, as layer 0. Head outputs
of the sprite transformer are ordered (layer, sprite): head l*K + k. Drawing the sprites is
in sprite_rendering.py.
"""

import torch
from torch import nn

from ..config import selection_of, size_pair
from .clamp import get_clamp
from .composition import fixed_occlusion, layered_composite, predicted_occlusion, transmittance
from .decomposition import Decomposition
from .encoders import build_encoder
from .heads import HeadBank
from .learned_selection import LearnedSelection, carried_color
from .learned_step import learned_choice
from .optimizer_rows import row_moments
from .position_readout import check_readable, layer_centres
from .prototypes import SampleImages, init_tensor
from .selection import exhaustive_select, greedy_select
from .sprite_rendering import SpriteRendering
from .transform_sequence import TransformSequence

PROTO_VALUE, MASK_VALUE, BKG_VALUE = 0.9, 0.5, 0.5
REASSIGN_NOISE_STD = 1e-4


class DTISprites(SpriteRendering, nn.Module):
    def __init__(
        self,
        cfg: dict,
        img_size: tuple[int, int],
        n_channels: int,
        sample_images: SampleImages | None = None,
        seed: int = 0,
    ):
        super().__init__()
        self.kwargs = {"cfg": cfg, "img_size": list(img_size), "n_channels": n_channels}
        self.K, self.L, self.M = cfg["n_sprites"], cfg["n_objects"], cfg["n_backgrounds"]
        self.C, self.img_size = n_channels, tuple(img_size)
        self.sprite_size = size_pair(cfg["sprite_size"], self.img_size)
        self.add_empty_sprite = cfg["add_empty_sprite"]
        self.lambda_empty_sprite = cfg["lambda_empty_sprite"]
        self.inject_noise = cfg["inject_noise"]
        self.selection, self.greedy_iter = selection_of(cfg), cfg["greedy_algo_iter"]
        self.pred_occlusion = cfg["pred_occlusion"]
        self.clamp = get_clamp(cfg["use_clamp"])
        self.sprites_frozen = False  # set by the trainer during `freeze_sprite` epochs
        self.encoder_bf16 = False  # `training.amp`: run the encoder under bf16 autocast

        gen = torch.Generator().manual_seed(seed)
        init = dict(std=cfg["gaussian_weights_std"], sample_images=sample_images, generator=gen, cache={})
        self.prototypes = nn.Parameter(
            init_tensor(cfg["proto_init"], self.K, self.C, self.sprite_size, PROTO_VALUE, key="proto_init", **init)
        )
        self.masks = nn.Parameter(
            init_tensor(cfg["mask_init"], self.K, 1, self.sprite_size, MASK_VALUE, key="mask_init", **init)
        )
        self.backgrounds = (
            nn.Parameter(init_tensor(cfg["bkg_init"], self.M, self.C, self.img_size, BKG_VALUE, key="bkg_init", **init))
            if self.M
            else None
        )

        self.encoder, n_features = build_encoder(cfg["encoder_name"], self.C, self.img_size, cfg["with_pool"])
        # Channels-last convolutions: measured 25% faster for resnet32 on a 2-core CPU, same math.
        self.encoder.to(memory_format=torch.channels_last)
        common = dict(
            in_features=n_features,
            n_colors=self.C,
            clamp=self.clamp,
            grid_size=cfg["grid_size"],
            kernel_size=cfg["kernel_size"],
            n_hidden_layers=cfg["n_hidden_layers"],
            norm_layer=cfg["norm_layer"],
        )
        layer = TransformSequence(
            cfg["transformation_sequence_layer"], self.L, milestones=cfg["curriculum_learning_layer"], **common
        )
        self.layer_transformer = None if layer.is_identity else layer
        self.sprite_out_size = self.sprite_size if self.layer_transformer is not None else self.img_size
        self.sprite_transformer = TransformSequence(
            cfg["transformation_sequence"], self.L * self.K, milestones=cfg["curriculum_learning"], **common
        )
        self.bkg_transformer = (
            TransformSequence(
                cfg["transformation_sequence_bkg"],
                self.M,
                padding_mode="border",
                milestones=cfg["curriculum_learning_bkg"],
                **common,
            )
            if self.M
            else None
        )
        self.occlusion_head = (
            HeadBank(1, n_features, self.L * (self.L - 1) // 2, cfg["n_hidden_layers"], cfg["norm_layer"])
            if self.pred_occlusion
            else None
        )
        self.selector = None
        if self.selection == "learned":
            if cfg["selection_readout"] == "position":
                check_readable(self.layer_transformer)
            pool_h, pool_w = self.encoder.pool.output_size
            map_channels = n_features // (pool_h * pool_w)
            self.selector = LearnedSelection(cfg, self.L, self.K, self.add_empty_sprite, n_features, map_channels)

    # ---- bookkeeping -------------------------------------------------------------------------
    @property
    def n_candidates(self) -> int:
        return self.K + int(self.add_empty_sprite)

    @property
    def sprite_renders_per_layer(self) -> int:
        """Sprite images a training step draws per layer and image: every candidate, or with the
        learned selection the drawn sprite and its gradient carrier, or its shortlist."""
        if self.selector is None:
            return self.n_candidates
        return self.selector.shortlist_size or 2

    def transformers(self) -> list[TransformSequence]:
        return [t for t in (self.sprite_transformer, self.layer_transformer, self.bkg_transformer) if t is not None]

    def cluster_parameters(self) -> list[nn.Parameter]:
        """Appearances, masks and backgrounds: the optimiser's `cluster` group."""
        return [p for p in (self.prototypes, self.masks, self.backgrounds) if p is not None]

    def transformer_parameters(self) -> list[nn.Parameter]:
        cluster = {id(p) for p in self.cluster_parameters()}
        return [p for p in self.parameters() if id(p) not in cluster]

    def advance_curricula(self, epoch: int) -> list[str]:
        return [name for t in self.transformers() for name in t.advance_curriculum(epoch)]

    def sprite_rows(self, k: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every (tensor, row indices) that belongs to sprite k: what reassignment copies."""
        rows = [(self.prototypes, torch.tensor([k])), (self.masks, torch.tensor([k]))]
        heads = torch.arange(self.L) * self.K + k
        for bank in self.sprite_transformer.heads:
            if bank is not None:
                rows += [(tensor, heads) for tensor in list(bank.parameters()) + list(bank.buffers())]
        return rows

    # ---- prediction ----------------------------------------------------------------------------
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Features (B, F) in float32."""
        return self.encode_map(images)[0]

    def encode_map(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled features (B, F) in float32 and the feature map before pooling (B, F', h, w), in
        bf16 when `encoder_bf16` is set (only the position readout reads it, and casts it then)."""
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=self.encoder_bf16):
            feature_map = self.encoder.trunk(images.contiguous(memory_format=torch.channels_last))
            features = self.encoder.flatten(self.encoder.pool(feature_map))
        return features.float(), feature_map

    def predict(self, features: torch.Tensor, feature_map: torch.Tensor | None = None) -> dict:
        """All head outputs for a batch of features (B, F); the feature map is read only by the
        learned selection's position readout."""
        betas = {
            "sprite": self.sprite_transformer.predict(features),
            "layer": self.layer_transformer.predict(features) if self.layer_transformer is not None else None,
            "bkg": self.bkg_transformer.predict(features) if self.bkg_transformer is not None else None,
            "occlusion": self.occlusion_head(features)[0] if self.occlusion_head is not None else None,
            "selection": None,
        }
        if self.selector is not None:
            centres = None
            if self.selector.readout is not None:
                if feature_map is None:
                    raise ValueError(
                        "predict: selection_readout: position reads the feature map; pass encode_map's pair"
                    )
                centres = layer_centres(self.layer_transformer, betas["layer"])
                feature_map = feature_map.float()
            betas["selection"] = self.selector.logits(features, feature_map, centres)  # (L, B, K')
        return betas

    def occlusion(self, betas: dict, batch: int, device) -> torch.Tensor:
        if self.pred_occlusion:
            return predicted_occlusion(betas["occlusion"], self.L, self.M > 0)
        return fixed_occlusion(self.L + int(self.M > 0), batch, device)

    # ---- selection and forward ---------------------------------------------------------------
    def _select(self, cand_colors, cand_masks, backgrounds, occlusion, images, windows=None):
        """windows: the candidates' windows when they were drawn over those only (greedy only)."""
        if self.selection == "greedy":
            K = self.n_candidates
            extra_cost = allowed = None
            if self.add_empty_sprite:
                is_sprite = torch.arange(K, device=images.device) < self.K
                if self.sprites_frozen:
                    allowed = is_sprite
                else:  # the prior on all but the empty sprite, with no item assignment (a host wait on a GPU)
                    extra_cost = is_sprite * float(self.lambda_empty_sprite)
            bkg = None if backgrounds is None else backgrounds[0]
            idx = greedy_select(
                cand_colors, cand_masks, bkg, occlusion, images, self.greedy_iter, extra_cost, allowed, windows
            )
            bkg_idx = None if backgrounds is None else torch.zeros_like(idx[0])
            return idx, bkg_idx
        return exhaustive_select(
            cand_colors, cand_masks, backgrounds, occlusion if self.pred_occlusion else None, images
        )

    def forward(self, images: torch.Tensor) -> Decomposition:
        """Explain images (B, C, H, W) in [0, 1]: select a sprite per layer and compose."""
        B = images.shape[0]
        betas = self.predict(*self.encode_map(images))
        noise = None
        if self._noise_active():
            noise = torch.rand(self.n_candidates, 1, *self.img_size, device=images.device)
        backgrounds = self.render_backgrounds(betas, B)
        occlusion = self.occlusion(betas, B, images.device)

        stack = self._sprite_stack()
        penalty = carrier = None
        if self.selector is not None:  # predicted (learned_step.py)
            idx, penalty, carrier = learned_choice(
                self, betas, _detach(betas), noise, stack, backgrounds, occlusion, images
            )
            bkg_idx = None if backgrounds is None else torch.zeros_like(idx[0])
        else:
            with torch.no_grad():
                drawn = None
                if self.selection == "greedy":
                    drawn = self.render_candidate_windows(_detach(betas), B, noise, stack.detach())
                cand_colors, cand_masks, windows = drawn or (
                    *self.render_candidates(_detach(betas), B, noise, stack.detach()),
                    None,
                )
                idx, bkg_idx = self._select(
                    cand_colors, cand_masks, _detach(backgrounds), occlusion.detach(), images, windows
                )
                del drawn, cand_colors, cand_masks
        colors, masks = self.render_sprites(betas, idx.unsqueeze(1), noise, stack)
        colors, masks = colors[:, 0], masks[:, 0]  # (L, B, C, H, W), (L, B, 1, H, W)
        if carrier is not None:
            masks = masks + carrier[1]  # + 0: the selection's gradient through the composite
        if self.M:
            bkg = backgrounds[bkg_idx, torch.arange(B, device=images.device)]  # (B, C, H, W)
            colors = torch.cat([bkg.unsqueeze(0), colors])
            masks = torch.cat([torch.ones_like(masks[:1]), masks])
        through = transmittance(masks, occlusion if self.pred_occlusion else None)  # (L', B, 1, H, W)
        recon = layered_composite(colors, masks, through=through)
        if carrier is not None:
            recon = recon + carried_color(carrier[0], through.detach())
        loss = (recon - images).square().flatten(1).mean(1)
        return Decomposition(recon, loss, idx, bkg_idx, colors, masks, occlusion, self.M > 0, betas, penalty)

    # ---- reassignment ------------------------------------------------------------------------
    @torch.no_grad()
    def restart_sprite(self, dst: int, src: int, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Make sprite dst a noisy copy of sprite src: parameters, head rows, optimiser moments."""
        for (tensor, dst_rows), (_, src_rows) in zip(self.sprite_rows(dst), self.sprite_rows(src)):
            tensor[dst_rows.to(tensor.device)] = tensor[src_rows.to(tensor.device)]
            for _, moment in row_moments(optimizer, tensor):
                moment[dst_rows.to(moment.device)] = moment[src_rows.to(moment.device)]
        if self.selector is not None:
            self.selector.copy_sprite(dst, src, optimizer, REASSIGN_NOISE_STD)
        self.jitter_sprite(dst)

    @torch.no_grad()
    def jitter_sprite(self, k: int) -> None:
        self.prototypes[k] += torch.randn_like(self.prototypes[k]) * REASSIGN_NOISE_STD


def compile_model(model: nn.Module, setting: bool | str) -> None:
    """`training.compile`: torch.compile the whole forward in place (state_dict keys unchanged).

    The late-phase forward is one graph without breaks, so selection and composition fuse
    with the rest; "reduce-overhead" also replays it as CUDA graphs (no effect on a CPU).
    """
    if setting is False:
        return
    model.compile(mode=None if setting is True else setting)


def _detach(tree):
    if tree is None:
        return None
    if torch.is_tensor(tree):
        return tree.detach()
    if isinstance(tree, dict):
        return {k: _detach(v) for k, v in tree.items()}
    return [_detach(v) for v in tree]
