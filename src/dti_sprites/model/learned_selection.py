"""Learned sprite selection (`model.selection: learned`, docs/method.md §1.8).

Greedy and exhaustive selection render every candidate sprite in every layer and keep the
best; here a head reads the encoder's features and predicts, per layer, logits over the K'
candidates (K sprites, + the empty one). Training draws one candidate per (layer, image), the
argmax (`straight_through`) or the argmax after Gumbel noise (`gumbel`), and renders it as
the other selections render their choice; evaluation takes the argmax.

Estimator. In value the drawn candidate c; in gradient the mixture Σ_k w_k X_k of what each
candidate k would make of the image, w = softmax(scores / τ). Rendering every X_k is what
the other selections pay for. One more render per layer gives the same gradient, because a
layer enters the composite linearly through its premultiplied colour m·a and its mask m,
warps are linear and colour modules affine: against c, candidate k changes the mask by
m_k − m_c and the premultiplied colour by m_k (a_k − a_c) + a_c (m_k − m_c). The *carrier* is
the drawn sprite plus Σ_k u_k m_k (a_k − a_c) in colour and Σ_k u_k m_k in mask, with
u = w − stop_gradient(w): zero in value, so the forward is the drawn candidate's to the last
bit. It is rendered with the drawn sprite's transformations, held fixed; its mask change
enters the composite as the layer's, its colour change unmasked, behind the layers in front.
Left out: a candidate's own sprite transformation (the drawn one's is used), the clamps'
kinks and the loss's curvature (the gradient is the first-order change of switching).
Mixing the untransformed sprites instead (one render, Σ_k w_k s_k) judges candidate k's mask
with c's colour, and left the back layer of a two-layer test at chance.
τ falls geometrically over `selection_anneal_iterations` (set by the trainer each step).

Shortlist (`selection_estimator: shortlist`). The straight-through gradient is first order and
the head must guess; here it proposes and the image decides. Each layer tries
`selection_shortlist` (k) distinct candidates: ⌈k/2⌉ drawn from softmax(logits / τ) (Gumbel
top-k) and the rest uniformly among the others. The model renders them and keeps the best as
greedy selection does among all, and the head learns, by cross-entropy on features it does not
train, to predict what was kept. Without the uniform half, the head's own proposals were all it
was ever shown to be right about: on Tetrominoes a few sprites took every layer and
reassignment restarted the rest. At evaluation the shortlist is the top k. A step renders
k + 1 sprite images per layer instead of K' + 1.

Balance. Reading mean probabilities, the usage term below cannot see the argmax pile onto a
few sprites while the logits stay nearly flat; reassignment then restarted most sprites at every
check. With `selection_balance_rate` > 0, sprite k's logit in layer l gets an offset b_lk, no
gradient, added before the draw (and at evaluation): b_lk falls by rate · log(f_lk / f̄_l) each
training step, f_lk a running mean of how often layer l draws sprite k (decay BALANCE_DECAY) and
f̄_l their mean over sprites, so an over-drawn sprite yields images to the others and a sprite
never drawn comes back into play. Per layer, because reassignment judges a layer's usage.

Readout. With `selection_readout: position`, the logits also read the encoder's feature map at
each layer's sprite centre (model/position_readout.py): from pooled features alone the head
could not tell which of 19 Tetrominoes sprites a layer's object was.

Usage terms keep sprites alive and layers parsimonious:
- `selection_usage_weight` · KL(p̄ ‖ uniform), p̄ the batch's mean choice probabilities of
  the K sprites (empty one left out), pooled over layers and images;
- `lambda_empty_sprite` per layer that draws a sprite, in expectation: the cost the greedy
  selection adds to each non-empty candidate.

Layout: logits and weights (L, B, K'); sprite stacks (K', C+2, h, w) as the model builds them.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from .heads import HeadBank
from .optimizer_rows import row_moments
from .position_readout import PositionReadout

# Running frequencies of the draws average over about 1 / (1 - decay) steps.
BALANCE_DECAY = 0.99
# A frequency below this fraction of the mean counts as this fraction (log 0 is no step size).
BALANCE_FLOOR = 1e-2


def gumbel_noise(like: torch.Tensor) -> torch.Tensor:
    """Gumbel(0, 1) samples shaped like `like`: added to logits, the argmax (or top k) draws from
    their softmax (without replacement)."""
    uniform = torch.rand_like(like).clamp_min(torch.finfo(like.dtype).tiny)
    return -(-uniform.log()).log()


def temperature_at(start: float, end: float, anneal_iterations: int, iteration: int) -> float:
    """Geometric from start (iteration 0) to end (anneal_iterations and after)."""
    progress = min(iteration / anneal_iterations, 1.0)
    return start * (end / start) ** progress


def carrier_sprites(stack: torch.Tensor, chosen: torch.Tensor, carrier_weights: torch.Tensor) -> torch.Tensor:
    """The drawn sprites, plus the zero-valued premultiplied changes that carry the gradient.

    stack (K', C+2, h, w): colours a, mask m, canvas, without gradient; chosen (L, B);
    carrier_weights u (L, B, K'), zero in value. Returns (L, B, C+2, h, w):
    [a_c + Σ_k u_k m_k (a_k − a_c), m_c + Σ_k u_k m_k, canvas_c].
    """
    L, B = chosen.shape
    C = stack.shape[1] - 2
    drawn = stack.index_select(0, chosen.flatten()).view(L, B, *stack.shape[1:])  # (L, B, C+2, h, w)
    colors, masks = stack[:, :C], stack[:, C : C + 1]
    u = carrier_weights.flatten(0, 1)  # (L*B, K')
    mask_change = torch.mm(u, masks.flatten(1)).view(L, B, 1, *stack.shape[2:])  # Σ_k u_k m_k
    premultiplied = torch.mm(u, (masks * colors).flatten(1)).view(L, B, C, *stack.shape[2:])  # Σ_k u_k m_k a_k
    color_change = premultiplied - drawn[:, :, :C] * mask_change  # Σ_k u_k m_k (a_k − a_c)
    return torch.cat(
        [drawn[:, :, :C] + color_change, drawn[:, :, C:] + torch.cat([mask_change, torch.zeros_like(mask_change)], 2)],
        2,
    )


def carried_color(color_change: torch.Tensor, through: torch.Tensor) -> torch.Tensor:
    """Σ_l T_l ΔA_l (B, C, H, W), zero in value: each object layer's colour change seen through
    the layers in front and not through its own drawn mask, as a premultiplied change is seen.
    color_change (L, B, C, H, W) of the object layers; through (L', B, 1, H, W) the layers'
    transmittance (composition.transmittance), without gradient, the object layers last."""
    return (through[-color_change.shape[0] :] * color_change).sum(0)


class LearnedSelection(nn.Module):
    """Per-layer logits over the candidates, the straight-through draw, and the usage terms."""

    def __init__(self, cfg: dict, n_layers: int, n_sprites: int, has_empty: bool, in_features: int, map_channels: int):
        super().__init__()
        self.K, self.has_empty = n_sprites, has_empty
        self.n_candidates = n_sprites + int(has_empty)
        # One MLP per layer, K' outputs; its last layer starts at zero: every candidate equally likely.
        self.head = HeadBank(n_layers, in_features, self.n_candidates, cfg["n_hidden_layers"], cfg["norm_layer"])
        self.readout = (
            PositionReadout(map_channels, self.n_candidates, cfg["n_hidden_layers"], cfg["norm_layer"])
            if cfg["selection_readout"] == "position"
            else None
        )
        self.gumbel = cfg["selection_estimator"] == "gumbel"
        self.shortlist_size = (
            min(cfg["selection_shortlist"], n_sprites) if cfg["selection_estimator"] == "shortlist" else 0
        )
        self.schedule = (*cfg["selection_temperature"], cfg["selection_anneal_iterations"])
        self.usage_weight = cfg["selection_usage_weight"]
        self.empty_cost = cfg["lambda_empty_sprite"]
        self.iteration = 0  # set by the trainer before each step; only the temperature reads it
        self.balance_rate = cfg["selection_balance_rate"]
        # Per layer and sprite: the offset added to its logits, how often it was drawn lately (see
        # Balance). Only with a rate: a model without them loads checkpoints written before them.
        if self.balance_rate > 0:
            self.register_buffer("balance", torch.zeros(n_layers, n_sprites))
            self.register_buffer("draw_frequency", torch.full((n_layers, n_sprites), 1.0 / n_sprites))
        else:
            self.balance = self.draw_frequency = None

    @property
    def temperature(self) -> float:
        return temperature_at(*self.schedule, self.iteration)

    def logits(
        self, features: torch.Tensor, feature_map: torch.Tensor | None = None, centres: torch.Tensor | None = None
    ) -> torch.Tensor:
        """features (B, F) -> (L, B, K'); with the position readout, plus what it reads of the
        feature map (B, F', h, w) at the layers' centres (L, B, 2). The shortlist's head learns a
        target of its own and leaves the encoder to the reconstruction."""
        if self.shortlist_size:
            features = features.detach()
            feature_map = None if feature_map is None else feature_map.detach()
        logits = self.head(features)
        if self.readout is not None:
            logits = logits + self.readout(feature_map, centres)
        return logits

    def _candidate_logits(self, logits: torch.Tensor, empty_allowed: bool) -> torch.Tensor:
        """The empty sprite at -inf while it is no candidate (frozen sprites, §1.8)."""
        if self.has_empty and not empty_allowed:
            logits = torch.cat([logits[..., : self.K], torch.full_like(logits[..., self.K :], -math.inf)], -1)
        return logits

    def _offset_scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits plus the balance offsets (none on the empty sprite)."""
        if self.balance is None:
            return logits
        return logits + F.pad(self.balance, (0, self.n_candidates - self.K))[:, None]  # (L, 1, K')

    def shortlist(self, logits: torch.Tensor, empty_allowed: bool) -> torch.Tensor:
        """Candidates to render, (L, k, B). In training, the first ⌈k/2⌉ are distinct draws from
        softmax(scores / τ) (Gumbel top-k) and the rest uniform draws among the others, so that
        a sprite the head has ruled out still gets tried; at evaluation, the k best scores."""
        scores = self._offset_scores(self._candidate_logits(logits.detach(), empty_allowed))
        k = min(self.shortlist_size, self.K if self.has_empty and not empty_allowed else self.n_candidates)
        if not self.training:
            return scores.topk(k, -1).indices.permute(0, 2, 1)
        proposed = (scores / self.temperature + gumbel_noise(scores)).topk((k + 1) // 2, -1).indices
        explore = torch.rand_like(scores).masked_fill(scores == -math.inf, -1.0)  # never the excluded empty sprite
        explore = explore.scatter(-1, proposed, -2.0).topk(k // 2, -1).indices
        return torch.cat([proposed, explore], -1).permute(0, 2, 1)

    def learn_choice(
        self, logits: torch.Tensor, shortlist: torch.Tensor, kept: torch.Tensor, chosen: torch.Tensor
    ) -> torch.Tensor:
        """The shortlist's objective: cross-entropy, among the shortlisted candidates (L, k, B)
        only, of the head's logits (L, B, K') towards the one kept (position kept (L, B), sprite
        chosen (L, B)), plus the usage terms; the balance follows the choice. Only the rendered
        candidates were compared: a softmax over all K' would also push down sprites never
        tried, and with half the shortlist drawn at random the head then learned next to nothing
        (its first choice agreed with greedy's on 1-9% of layers, chance being 5%)."""
        if self.training and self.balance is not None:
            self._rebalance(chosen)
        tried = logits.gather(-1, shortlist.transpose(1, 2))  # (L, B, k)
        cross_entropy = F.cross_entropy(tried.flatten(0, 1), kept.flatten())
        return cross_entropy + self.penalty(logits.softmax(-1))

    def choose(
        self, logits: torch.Tensor, empty_allowed: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Chosen candidates (L, B), carrier weights (L, B, K') and the usage penalty (a scalar).

        The carrier weights are zero in value with the relaxed draw's gradient (None out of
        training); the penalty reads the choice probabilities.
        """
        logits = self._candidate_logits(logits, empty_allowed)
        probs = logits.softmax(-1)  # what Gumbel-max draws from
        scores = self._offset_scores(logits)
        if not self.training:
            return scores.argmax(-1), None, self.penalty(probs)
        if self.gumbel:
            scores = scores + gumbel_noise(scores)
        relaxed = (scores / self.temperature).softmax(-1)
        chosen = scores.argmax(-1)
        if self.balance is not None:
            self._rebalance(chosen)
        return chosen, relaxed - relaxed.detach(), self.penalty(probs)

    @torch.no_grad()
    def _rebalance(self, chosen: torch.Tensor) -> None:
        """One step of the offsets from the draws chosen (L, B) (see Balance in the docstring)."""
        L = chosen.shape[0]
        layer = torch.arange(L, device=chosen.device)[:, None]
        drawn = torch.bincount((layer * self.n_candidates + chosen).flatten(), minlength=L * self.n_candidates)
        drawn = drawn.view(L, self.n_candidates)[:, : self.K].float()
        total = drawn.sum(1, keepdim=True)
        # A layer that drew only the empty sprite says nothing about which sprite is over-drawn.
        seen = total > 0
        share = torch.where(seen, drawn / total.clamp_min(1), self.draw_frequency)
        self.draw_frequency.mul_(BALANCE_DECAY).add_(share, alpha=1 - BALANCE_DECAY)
        mean = self.draw_frequency.mean(1, keepdim=True)
        ratio = (self.draw_frequency / mean).clamp_min(BALANCE_FLOOR)
        self.balance.sub_(self.balance_rate * ratio.log() * seen)

    def penalty(self, probs: torch.Tensor) -> torch.Tensor:
        """Usage terms of the choice probabilities probs (L, B, K')."""
        usage = probs[..., : self.K].mean((0, 1))  # (K,)
        usage = usage / usage.sum().clamp_min(1e-12)
        kl_to_uniform = (usage * usage.clamp_min(1e-12).log()).sum() + math.log(self.K)
        total = self.usage_weight * kl_to_uniform
        if self.has_empty:
            drawn_layers = (1 - probs[..., self.K]).sum(0).mean()  # expected non-empty layers per image
            total = total + self.empty_cost * drawn_layers
        return total

    @torch.no_grad()
    def copy_sprite(self, dst: int, src: int, optimizer: torch.optim.Optimizer | None, noise_std: float) -> None:
        """Sprite dst's logit takes sprite src's weights in every layer, optimiser moments too
        (reassignment), plus noise: equal logits would leave every image to the lower index of
        the two under the argmax, while noisy weights split src's images along a random
        hyperplane of the features, as reassignment splits a cluster."""
        heads = [self.head] + ([self.readout.head] if self.readout is not None else [])
        for tensor in [t for head in heads for t in (head.last_weight, head.last_bias)]:
            for view in [tensor] + [moment for _, moment in row_moments(optimizer, tensor)]:
                view[..., dst] = view[..., src]
        if self.balance is not None:
            self.balance[:, dst] = self.balance[:, src]
            self.draw_frequency[:, [dst, src]] = self.draw_frequency[:, src, None] / 2  # src's images are now split
        for head in heads:
            weight = head.last_weight[..., dst]  # (n_heads, hidden)
            weight += torch.randn_like(weight) * noise_std
