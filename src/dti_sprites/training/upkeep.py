"""What the training loop does to the model itself between steps, at fractions of the planned
iterations: restart empty sprites (reassignment) and dead layers, and average the weights late in
training. A mixin of Trainer: it reads the trainer's config, model, optimiser and iteration.
"""

import torch

from .dead_layers import dead_layers, restart_layers
from .distributed import broadcast_module
from .reassign import reassign_empty_clusters
from .weight_average import WeightAverage

LAST_LAYER_RESTART = 0.9  # fraction of training after which dead layers are left alone


class ModelUpkeep:
    """Trainer's interval-time changes to its model; every rank takes the same decisions."""

    def _past(self, fraction: float) -> bool:
        """Whether this iteration lies beyond `fraction` of the planned iterations."""
        return self.iteration > fraction * self.total_iters

    def _averaging(self) -> bool:
        """Whether this iteration lies in the averaged part of training."""
        start = self.cfg["training"]["average_weights_from"]
        return start is not None and self._past(start)

    def _share_restart(self) -> None:
        """After a restart: rank 0's weights (its draw of the restart noise) go to every rank, and
        the weight mean begins again, since the restarted sprite or layer is a new one."""
        broadcast_module(self.model, self.dist)
        if self.weight_average is not None:
            self.weight_average.restart()

    def _average_weights(self) -> None:
        if not self._averaging():
            return
        if self.weight_average is None:
            self.weight_average = WeightAverage(self.model)
            self.log.info(f"iteration {self.iteration}: averaging the weights from here on")
        self.weight_average.update()

    def _reassign(self, counts: torch.Tensor) -> None:
        late = self._past(self.cfg["training"]["reassign_until"])
        if not self.cfg["model"]["reassign_cluster"] or self.model.sprites_frozen or late:
            return
        restarted = reassign_empty_clusters(
            self.model, self.optimizer, counts, self.empty_threshold, self.cfg["model"]["reassign_rule"]
        )
        if restarted:
            self._share_restart()
            pairs = ", ".join(f"{dst}<-{src}" for dst, src in restarted)
            self.log.info(f"iteration {self.iteration}: restarted sprites (restarted<-copied from) {pairs}")

    def _restart_dead_layers(self, area_sum: torch.Tensor, drawn: torch.Tensor) -> None:
        threshold = self.cfg["model"]["dead_layer_threshold"]
        # A layer restarted in the last tenth would reach the final model still unplaced.
        if threshold is None or self.model.L < 2 or self._past(LAST_LAYER_RESTART):
            return
        dead = dead_layers(area_sum, drawn, threshold)  # summed over ranks: the same on every rank
        if not dead:
            return
        restart_layers(self.model, dead, self.optimizer)
        self._share_restart()
        areas = ", ".join(f"{a:.4f}" for a in (area_sum / drawn.clamp(min=1)).tolist())
        self.log.info(
            f"iteration {self.iteration}: layers {dead} drew nothing (mean mask by layer {areas}); "
            "restarted at the identity, behind the others"
        )
