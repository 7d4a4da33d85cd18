"""Time the original release's training step on this machine, to set beside `bench`.

A speed ratio only means something when both sides ran on one machine in one session, so
this times the original (a checkout of github.com/monniert/dti-sprites, not part of this
package) the way `python -m dti_sprites bench` times ours: random images of the config's
size, the model in its late state (every epoch's `step()` taken, so sprites are unfrozen and
curricula done), then zero_grad, forward with sprite selection, backward and Adam, as the
original's trainer does them. Prints one JSON line.

    .venv/bin/python scripts/bench_original.py --original ../dti-sprites --config tetro.yml --threads 2

The original was written for torch 1.5; two names it imports have moved since (scipy's
`signal.gaussian`, kornia's `homography_warp`). They are aliased here before its modules load,
so its files run unchanged.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import kornia
import scipy.signal
import torch
import yaml

from dti_sprites.data import DATASETS


def alias_moved_names() -> None:
    if not hasattr(scipy.signal, "gaussian"):
        scipy.signal.gaussian = scipy.signal.windows.gaussian
    if not hasattr(kornia, "homography_warp"):
        kornia.homography_warp = kornia.geometry.transform.homography_warp


class RandomImages(torch.utils.data.Dataset):
    """What the original's model reads from its dataset at construction: sizes, and images
    for data-driven initialisations (random ones do for timing)."""

    def __init__(self, name: str, shape: tuple[int, int, int], n_classes: int | None):
        self.name, self.n_channels, self.img_size = name, shape[0], tuple(shape[1:])
        self.n_classes = n_classes
        self.n = 1000

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        return torch.rand(self.n_channels, *self.img_size), 0


def build(original: Path, config: dict):
    """The original's model and optimiser, built as its trainer builds them."""
    sys.path.insert(0, str(original / "src"))
    from model import get_model  # the original's modules, importable only now
    from optimizer import get_optimizer

    name = config["dataset"]["name"]
    entry = DATASETS.get(name)
    if entry.native_shape is None:
        raise SystemExit(f"dataset {name!r}: no known image size to time with")
    dataset = RandomImages(name, entry.native_shape, entry.n_classes)
    model_cfg = dict(config["model"])
    model = get_model(model_cfg.pop("name"))(dataset, **model_cfg)
    # The trainer moves the model to its GPU, which also makes the masks, built from an
    # expanded view, a dense tensor; on a CPU `.to` keeps the view and Adam cannot update it.
    model.mask_params.data = model.mask_params.data.clone()
    opt_cfg = dict(config["training"]["optimizer"] or {})
    groups = [
        {"params": model.cluster_parameters(), **opt_cfg.pop("cluster", {})},
        {"params": model.transformer_parameters(), **opt_cfg.pop("transformer", {})},
    ]
    optimizer = get_optimizer(opt_cfg.pop("name"))(groups, **opt_cfg)
    model.set_optimizer(optimizer)
    for _ in range(config["training"]["n_epoches"]):  # the trainer's end-of-epoch call
        model.step()
    if getattr(model, "are_sprite_frozen", False):
        raise SystemExit("the original's sprites are still frozen after every epoch; expected its late state")
    return model.train(), optimizer, dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", required=True, type=Path, help="checkout of monniert/dti-sprites")
    parser.add_argument("--config", default="tetro.yml", help="a file in the original's configs/")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    config_path = args.original / "configs" / args.config
    if not (args.original / "src" / "model" / "dti_sprites.py").is_file() or not config_path.is_file():
        raise SystemExit(f"--original {args.original}: expected src/model/dti_sprites.py and configs/{args.config}")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    alias_moved_names()
    config = yaml.safe_load(config_path.read_text())
    model, optimizer, dataset = build(args.original, config)
    batch = torch.rand(config["training"]["batch_size"], dataset.n_channels, *dataset.img_size)
    times = []
    for i in range(args.warmup + args.steps):
        start = time.perf_counter()
        optimizer.zero_grad()
        loss = model(batch)[0]
        loss.backward()
        optimizer.step()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    print(
        json.dumps(
            {
                "implementation": "original",
                "config": args.config,
                "median_ms": statistics.median(times) * 1000,
                "steps": args.steps,
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "loss": float(loss.detach()),
            }
        )
    )


if __name__ == "__main__":
    main()
