"""What training accumulates between intervals, kept on the device and in the checkpoint.

Two windows run side by side: the logging window (loss and sprite choices since the last
`train_stat_interval`) and the reassignment window (sprite choices and each layer's drawn
mask area since the last `check_cluster_interval`). Both travel in the checkpoint, so a run stopped between two
intervals and resumed sees the same windows as an uninterrupted one: the reassignment
decisions, and so the weights, stay bit-identical.
"""

import torch

from .dead_layers import layer_areas
from .reassign import assignment_counts


class StepStats:
    def __init__(self, n_layers: int, n_candidates: int, device: torch.device):
        self.n_candidates = n_candidates
        self.loss_sum = torch.zeros((), device=device)
        self.counts = torch.zeros(n_layers, n_candidates, dtype=torch.long, device=device)
        self.cluster_counts = torch.zeros_like(self.counts)
        self.layer_area = torch.zeros(n_layers, device=device)  # summed mean drawn mask per layer
        self.layer_drawn = torch.zeros(n_layers, device=device)  # images counted in layer_area
        self.window_iters = 0

    def add(
        self,
        loss: torch.Tensor,
        sprite_idx: torch.Tensor,
        object_masks: torch.Tensor | None = None,
        empty_index: int | None = None,
    ) -> None:
        """One iteration's mean loss, sprite choices (L, B) and object-layer masks (L, B, 1, H, W);
        queues device work only."""
        self.loss_sum += loss
        step_counts = assignment_counts(sprite_idx, self.n_candidates)
        self.counts += step_counts
        self.cluster_counts += step_counts
        if object_masks is not None:
            area, drawn = layer_areas(object_masks, sprite_idx, empty_index)
            self.layer_area += area
            self.layer_drawn += drawn
        self.window_iters += 1

    def reset_window(self) -> None:
        self.loss_sum.zero_()
        self.counts.zero_()
        self.window_iters = 0

    def reset_cluster_window(self) -> None:
        self.cluster_counts.zero_()
        self.layer_area.zero_()
        self.layer_drawn.zero_()

    def state_dict(self) -> dict:
        return {
            "loss_sum": self.loss_sum,
            "counts": self.counts,
            "cluster_counts": self.cluster_counts,
            "layer_area": self.layer_area,
            "layer_drawn": self.layer_drawn,
            "window_iters": self.window_iters,
        }

    def load_state_dict(self, state: dict) -> None:
        for name in ("loss_sum", "counts", "cluster_counts", "layer_area", "layer_drawn"):
            if name in state:  # checkpoints written before the dead-layer check lack the areas
                getattr(self, name).copy_(state[name])
        self.window_iters = state["window_iters"]
