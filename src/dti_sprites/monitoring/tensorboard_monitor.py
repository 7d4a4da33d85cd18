"""Scalars and image grids as TensorBoard event files (`training.tensorboard: true`).

Written to `<run>/tensorboard/`; view them with `tensorboard --logdir runs/`. Scalar tags
are `<group>/<name>` (e.g. `train/loss`, `proportions/3`, `val/ari`), image tags the grid
names (`sprites`, `masks`, `transformed_sprites`, ...).
"""

import logging
import math
from pathlib import Path

from torchvision.utils import make_grid

from . import Monitor

log = logging.getLogger(__name__)


class TensorboardMonitor(Monitor):
    def __init__(self, log_dir: str | Path):
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def scalars(self, step, group, values):
        for name, value in values.items():
            value = float(value)
            if math.isfinite(value):
                self.writer.add_scalar(f"{group}/{name}", value, step)

    def images(self, step, grids):
        for name, (batch, nrow) in grids.items():
            batch = batch.detach().float().cpu().clamp(0, 1)
            self.writer.add_image(name, make_grid(batch, nrow=nrow, padding=2, pad_value=1), step)
        self.writer.flush()

    def close(self):
        self.writer.close()


def open_tensorboard(run_dir) -> TensorboardMonitor | None:
    """A monitor writing under <run>/tensorboard/, or None after one warning line in the log."""
    try:
        monitor = TensorboardMonitor(Path(run_dir) / "tensorboard")
    except ImportError as err:
        log.warning(
            f"tensorboard: cannot import it ({err}); training goes on without event files "
            "(install it with `pip install tensorboard`)"
        )
        return None
    log.info(f"tensorboard: event files in {monitor.log_dir} (view: tensorboard --logdir {monitor.log_dir})")
    return monitor
