"""Live monitoring sinks. The trainer reports scalars and image grids to one `Monitor`;
each backend (visdom, TensorBoard) is a subclass chosen by the config."""

import torch


class Monitor:
    """Does nothing; backends override what they show."""

    def scalars(self, step: int, group: str, values: dict[str, float]) -> None:
        """values: name -> number, e.g. group "train" with {"loss": 0.1}."""

    def images(self, step: int, grids: dict[str, tuple[torch.Tensor, int]]) -> None:
        """grids: name -> (batch (N, C, H, W) in [0, 1], images per row)."""

    def close(self) -> None:
        """Flush and release resources at the end of training."""


class MonitorGroup(Monitor):
    """Forwards every report to several monitors."""

    def __init__(self, monitors: list[Monitor]):
        self.monitors = monitors

    def scalars(self, step, group, values):
        for monitor in self.monitors:
            monitor.scalars(step, group, values)

    def images(self, step, grids):
        for monitor in self.monitors:
            monitor.images(step, grids)

    def close(self):
        for monitor in self.monitors:
            monitor.close()


def build_monitor(cfg: dict, run_dir) -> Monitor:
    """The monitors the config asks for (none by default).

    `training.visualizer_port` set: live plots in the visdom server on localhost at that
    port; `training.tensorboard: true`: event files under <run>/tensorboard/. A backend that
    cannot start logs one warning and is left out; training goes on.
    """
    train = cfg["training"]
    monitors: list[Monitor] = []
    if train.get("visualizer_port") is not None:
        from .visdom_monitor import connect_visdom

        monitors.append(connect_visdom(train["visualizer_port"], run_dir))
    if train.get("tensorboard"):
        from .tensorboard_monitor import open_tensorboard

        monitors.append(open_tensorboard(run_dir))
    return MonitorGroup([m for m in monitors if m is not None])
