"""Empty-cluster reassignment (SPEC §2.3): a sprite that explains almost nothing restarts
as a noisy copy of the most used one, optimiser moments included."""

import torch


def assignment_counts(sprite_idx: torch.Tensor, n_candidates: int) -> torch.Tensor:
    """How many images chose each sprite in each layer: (L, B) -> (L, K'). No host sync."""
    counts = torch.zeros(sprite_idx.shape[0], n_candidates, dtype=torch.long, device=sprite_idx.device)
    return counts.scatter_add_(1, sprite_idx, torch.ones_like(sprite_idx))  # one_hot would read a min back


def sprite_proportions(counts: torch.Tensor, n_sprites: int, has_empty: bool, layers: str = "random") -> torch.Tensor:
    """Proportions (K,) of one layer drawn at random (L > 1), the empty sprite left out.

    layers="all" pools the counts of every layer instead: one layer that settles on a single
    sprite then no longer makes every other sprite look empty.
    With an empty sprite the proportions are divided by the largest one, so a sprite is
    judged against the busiest sprite rather than against the share the empty one took.
    """
    if layers == "all":
        counts = counts.sum(0).double()
    else:
        layer = int(torch.randint(counts.shape[0], (1,))) if counts.shape[0] > 1 else 0
        counts = counts[layer].double()
    props = counts / counts.sum().clamp(min=1)
    if has_empty:
        props = props[:n_sprites]
        props = props / props.max().clamp(min=1e-12)
    return props


def reassign_empty_clusters(model, optimizer, counts: torch.Tensor, threshold: float,
                            layers: str = "random") -> list[int]:
    """Restart every sprite whose proportion is below threshold; return their indices."""
    props = sprite_proportions(counts.cpu(), model.K, model.add_empty_sprite, layers)
    most_used = int(props.argmax())
    restarted = [k for k in range(model.K) if props[k] < threshold and k != most_used]
    for k in restarted:
        model.restart_sprite(k, most_used, optimizer)
    if restarted:
        model.jitter_sprite(most_used)
    return restarted
