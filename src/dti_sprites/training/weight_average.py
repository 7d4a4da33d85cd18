"""An equal-weight running mean of the model's weights over the last part of training
(stochastic weight averaging, `training.average_weights_from`).

Late in a run, at the low learning rate, the model keeps moving: on Tetrominoes, checkpoints
500 steps apart differ by up to 0.01 validation ARI-FG, so the score of the last step is partly
luck. The mean of the weights seen since averaging began is one steadier model; it replaces the
trained weights at the end. Batch-norm statistics are averaged with the weights.

A restart (reassignment, a dead layer) changes what a sprite or a layer is, so the mean begins
again from the restarted weights.
"""

import torch


class WeightAverage:
    """The running mean of every floating-point tensor of a model's state; the others (counters)
    are taken from the last step."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.restart()

    def update(self) -> None:
        """Fold the model's current weights into the mean."""
        if self._pairs is None:  # the state's tensors share storage with the live weights
            live = self.model.state_dict()
            pairs = [(mean, live[name]) for name, mean in self.mean.items()]
            averaged = [pair for pair in pairs if pair[0].is_floating_point()]
            self._pairs = averaged, [pair for pair in pairs if not pair[0].is_floating_point()]
        averaged, counters = self._pairs
        self.count += 1
        with torch.no_grad():
            for mean, live in averaged:
                mean.lerp_(live, 1.0 / self.count)
            for last, live in counters:
                last.copy_(live)

    def restart(self) -> None:
        """Begin again from the model's current weights (after a sprite or layer restart)."""
        self.count = 0
        state = self.model.state_dict()
        self.mean = {name: t.detach().clone() for name, t in state.items() if isinstance(t, torch.Tensor)}
        self._pairs = None

    def copy_into_model(self) -> None:
        """Replace the model's weights by the mean (no-op before the first update); the state
        that is not a tensor (a module's extra state) stays the model's own."""
        if self.count:
            self.model.load_state_dict({**self.model.state_dict(), **self.mean})

    def state_dict(self) -> dict:
        return {"count": self.count, "mean": self.mean}

    def load_state_dict(self, state: dict) -> None:
        self.count = state["count"]
        for name, tensor in state["mean"].items():
            self.mean[name].copy_(tensor)
        self._pairs = None
