"""Live plots in a visdom server (`training.visualizer_port`), as the original release had.

One visdom environment per run, named after the run folder (`<dataset>_<MMDD>_<tag>`).
Each scalar group ("train", "proportions", "val", "final") is one line-plot window with a
line per value, except values of a unit or scale of their own (`OWN_WINDOW`: loss, ms per
image, learning rate), which get a window each (`train_loss`, `val_loss`, ...): on one linear
axis a loss of 0.1 and a learning rate of 0.001 are flat lines under 16 ms per image. Each
image grid ("sprites", "masks", ...) is one image window, replaced at every validation. Start
a server with `python -m dti_sprites visdom-server --port 8097` (see visdom_server.py for
why not `python -m visdom.server`) and open the page the training log names.

Monitoring must never stop training: a server that cannot be reached at start gives one
warning and no monitor; one that goes away later gives one warning and the monitor falls
silent.
"""

import logging
import math

import torch
import torch.nn.functional as F
from torchvision.utils import make_grid

from . import Monitor

log = logging.getLogger(__name__)

# Tiny sprites (24 px) are unreadable at native size in a browser: upscale grid cells to this.
MIN_CELL_PX = 64
# Scalar names plotted alone rather than in their group's window, with their y axis type; the
# others in a group (scores, sprite proportions) share one scale, [0, 1]. Learning rates span
# decades (and a constant 0.001 reads as 0 on plotly's linear axis around it).
OWN_WINDOW = {"loss": "linear", "time_per_img_ms": "linear", "lr": "log"}


def env_name(run_dir) -> str:
    """`<dataset>_<run folder name>`: unique per run, grouped by dataset in the visdom UI."""
    from pathlib import Path

    run_dir = Path(run_dir)
    return f"{run_dir.parent.name}_{run_dir.name}"


class VisdomMonitor(Monitor):
    def __init__(self, client, env: str):
        """client: a connected `visdom.Visdom`; use `connect_visdom` to make one."""
        self.vis, self.env = client, env
        self.failed = False
        self._lines: set[str] = set()

    def _call(self, what: str, fn, *args, **kwargs) -> None:
        if self.failed:
            return
        try:
            fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001  (any client failure must not stop training)
            self.failed = True
            log.warning(f"visdom: {what} failed ({type(err).__name__}: {err}); live plots stop, training goes on")

    def scalars(self, step, group, values):
        values = {k: float(v) for k, v in values.items() if math.isfinite(float(v))}
        shared = {k: v for k, v in values.items() if k not in OWN_WINDOW}
        if shared:
            self._plot(step, group, group, shared)
        for name, axis in OWN_WINDOW.items():
            if name in values:
                self._plot(step, f"{group}_{name}", f"{group}: {name}", {name: values[name]}, axis)

    def _plot(self, step: int, win: str, title: str, values: dict[str, float], axis: str = "linear") -> None:
        """Append one point per value to window `win`, one line per value (created on first use)."""
        names = list(values)
        Y = torch.tensor([[values[n] for n in names]])  # (1, n_lines)
        X = torch.full_like(Y, float(step))
        if len(names) == 1:
            Y, X = Y[0], X[0]  # visdom wants 1-D for a single line
        first = win not in self._lines
        opts = dict(title=title, legend=names, xlabel="iteration", ytype=axis, showlegend=True)
        self._call(
            f"plot {win!r}",
            self.vis.line,
            Y=Y,
            X=X,
            win=win,
            env=self.env,
            opts=opts,
            update=None if first else "append",
        )
        self._lines.add(win)

    def images(self, step, grids):
        for name, (batch, nrow) in grids.items():
            batch = batch.detach().float().cpu().clamp(0, 1)
            if batch.shape[1] == 1:
                batch = batch.expand(-1, 3, -1, -1)
            factor = max(1, math.ceil(MIN_CELL_PX / max(batch.shape[-2:])))
            if factor > 1:
                batch = F.interpolate(batch, scale_factor=factor, mode="nearest")
            grid = make_grid(batch, nrow=nrow, padding=2, pad_value=1).numpy()  # (3, H', W')
            # No caption: visdom shows one twice (over the image and under it); the title has it all.
            self._call(
                f"image {name!r}",
                self.vis.image,
                grid,
                win=name,
                env=self.env,
                opts=dict(title=f"{name} (iteration {step})"),
            )

    def close(self):
        if not self.failed:
            self._call("save", self.vis.save, [self.env])


def connect_visdom(port: int, run_dir, server: str = "http://localhost"):
    """A VisdomMonitor on a reachable server, or None after one warning line in the log."""
    try:
        import visdom
    except ImportError as err:
        log.warning(
            f"visdom: cannot import it ({err}); training goes on without live plots "
            "(install it with `pip install visdom`)"
        )
        return None
    env = env_name(run_dir)
    quiet = logging.getLogger("visdom")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # its "no incoming socket" notice is irrelevant here
    try:
        # The constructor already posts the environment: it raises when nothing answers.
        client = visdom.Visdom(server=server, port=port, env=env, raise_exceptions=True, use_incoming_socket=False)
        connected = True
    except Exception:  # noqa: BLE001  (refused, reset, DNS: all mean "not reachable")
        connected = False
    finally:
        quiet.setLevel(level)
    if not connected:
        log.warning(
            f"visdom: no server answers at {server}:{port}; training goes on without live plots "
            f"(start one with `python -m dti_sprites visdom-server --port {port}`)"
        )
        return None
    log.info(f"visdom: live plots at {server}:{port}/env/{env}")
    return VisdomMonitor(client, env)
