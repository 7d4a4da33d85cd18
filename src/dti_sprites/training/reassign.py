"""Empty-cluster reassignment: a sprite that explains almost nothing is restarted as a noisy
copy of a busy one, optimiser moments included (the paper's empty-cluster reassignment).

Three rules, by name (`model.reassign_rule`):

- `original`, the paper's: the proportions of ONE layer drawn at random judge every sprite,
  and every sprite below the threshold becomes a copy of that layer's most used sprite.
  A sprite that is common overall but rare in the drawn layer is thrown away, and when a
  layer has settled on one blurry sprite, that sprite is copied over all the others at
  once: the collapse seen on the demo.
- `pooled`: the same copy, judged on the assignments of all layers pooled.
- `split` (the default): pooled judgement, and each empty sprite splits a *different*
  over-used sprite (one whose share is above the mean, 1/K), busiest first, one copy per
  source per check. Sprites left over wait for the next check. A blurry sprite that carries
  several shapes is split in two, as k-means splits its largest cluster, but never
  copied everywhere.
"""

import torch

from ..config import REASSIGN_RULES


def assignment_counts(sprite_idx: torch.Tensor, n_candidates: int) -> torch.Tensor:
    """How many images chose each sprite in each layer: (L, B) -> (L, K'). No host sync."""
    counts = torch.zeros(sprite_idx.shape[0], n_candidates, dtype=torch.long, device=sprite_idx.device)
    return counts.scatter_add_(1, sprite_idx, torch.ones_like(sprite_idx))  # one_hot would read a min back


def sprite_proportions(counts: torch.Tensor, n_sprites: int, has_empty: bool, pooled: bool) -> torch.Tensor:
    """Proportions (K,) of the sprites, the empty sprite left out.

    counts (L, K'): pooled sums the layers; otherwise one layer is drawn at random (L > 1).
    With an empty sprite the proportions are divided by the largest one, so a sprite is
    judged against the busiest sprite rather than against the share the empty one took.
    """
    if pooled:
        counts = counts.sum(0).double()
    else:
        layer = int(torch.randint(counts.shape[0], (1,))) if counts.shape[0] > 1 else 0
        counts = counts[layer].double()
    props = counts / counts.sum().clamp(min=1)
    if has_empty:
        props = props[:n_sprites]
        props = props / props.max().clamp(min=1e-12)
    return props


def plan_restarts(props: torch.Tensor, threshold: float, rule: str) -> list[tuple[int, int]]:
    """(empty sprite, source sprite) pairs for proportions props (K,)."""
    K = props.shape[0]
    order = sorted(range(K), key=lambda k: (-float(props[k]), k))  # busiest first
    most_used = order[0]
    empty = [k for k in range(K) if props[k] < threshold and k != most_used]
    if rule in ("original", "pooled"):
        return [(k, most_used) for k in empty]
    empty.sort(key=lambda k: (float(props[k]), k))  # emptiest first
    fair_share = float(props.mean())  # 1/K, or its equivalent when props were divided by the largest
    sources = [k for k in order if props[k] > fair_share] or [most_used]
    return list(zip(empty, sources))


def reassign_empty_clusters(
    model, optimizer, counts: torch.Tensor, threshold: float, rule: str = "split"
) -> list[tuple[int, int]]:
    """Restart the empty sprites by `rule`; return the (restarted, copied from) pairs."""
    if rule not in REASSIGN_RULES:
        raise ValueError(f"unknown reassignment rule {rule!r}; expected one of {', '.join(REASSIGN_RULES)}")
    props = sprite_proportions(counts.cpu(), model.K, model.add_empty_sprite, pooled=rule != "original")
    plan = plan_restarts(props, threshold, rule)
    for dst, src in plan:
        model.restart_sprite(dst, src, optimizer)
    for src in sorted({src for _, src in plan}):
        model.jitter_sprite(src)
    return plan
