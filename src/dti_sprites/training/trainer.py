"""The training loop (SPEC §2): one object that owns the run and can stop and resume it.

Per iteration: forward with sprite selection, loss, backward, Adam step, and device-side
accumulation of the statistics; values leave the device only at logging intervals. The
order of training images is a pure function of (seed, epoch), so a resumed run sees the
same batches as an uninterrupted one.
"""

import contextlib
import json
import logging
import math
import random
import signal
import threading
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..config import save_config, size_pair
from ..data import DATASETS
from ..errors import CheckpointError, DTISpritesError
from ..evaluation import evaluate_model
from ..model.sprites_model import DTISprites
from ..monitoring import build_monitor
from .batches import ResidentImages
from .checkpoint import CHECKPOINT_NAME, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .optim import build_optimizer, build_scheduler
from .plots import plot_metrics
from .reassign import assignment_counts, reassign_empty_clusters
from .run_folder import LOGGER_NAME, MetricsTable, new_run_dir, setup_logger, write_scores
from .snapshots import make_gifs, save_snapshots

N_SNAPSHOT_IMAGES = 4
MODEL_NAME = "dti_sprites"


def dataset_root(cfg: dict) -> Path:
    """`dataset.path` when given, else <data_root>/<the dataset's own folder>."""
    data = cfg["dataset"]
    return Path(data["path"]) if data["path"] else Path(data["data_root"]) / DATASETS.get(data["name"]).folder


def build_dataset(cfg: dict, split: str):
    """The config's dataset for one split, with its registry entry (class count, benchmark kind)."""
    data = cfg["dataset"]
    entry = DATASETS.get(data["name"])
    img_size = None if data["img_size"] is None else size_pair(data["img_size"], (0, 0))
    return entry(dataset_root(cfg), split, img_size=img_size), entry


def build_model(cfg: dict, dataset, sample_images=None, seed: int = 0) -> DTISprites:
    return DTISprites(cfg["model"], dataset.img_size, dataset.n_channels, sample_images, seed)


class Trainer:
    def __init__(self, cfg: dict, device: str | torch.device = "cpu", runs_root: str | Path = "runs",
                 tag: str = "default", progress: bool = True, quiet: bool = False):
        self.cfg, self.device, self.progress = cfg, torch.device(device), progress
        train_cfg = cfg["training"]
        resume = load_checkpoint(train_cfg["resume"]) if train_cfg["resume"] else None
        if resume is not None:
            self.run_dir = _run_dir_of(train_cfg["resume"])
            _check_compatible(resume["model_kwargs"]["cfg"], cfg["model"])
        else:
            self.run_dir = new_run_dir(runs_root, cfg["dataset"]["name"], tag)
            save_config(cfg, self.run_dir / "config.yml")
        self.log = setup_logger(self.run_dir, quiet)
        self.seed = train_cfg["seed"] if train_cfg["seed"] is not None else random.randrange(2**31)
        _seed_everything(self.seed)

        self.train_set, self.dataset_entry = build_dataset(cfg, "train")
        self.val_set, _ = build_dataset(cfg, "val")
        self.eval_set, _ = build_dataset(cfg, "eval")
        self.images = ResidentImages(self.train_set, self.device, train_cfg["n_workers"], progress)
        init_gen = torch.Generator().manual_seed(self.seed)
        self.model = build_model(cfg, self.train_set, lambda n: self.images.sample(n, init_gen), self.seed)
        self.model.to(self.device)
        self.snapshot_images = self.images.batch(torch.arange(min(N_SNAPSHOT_IMAGES, len(self.images))))

        self.batch_size = train_cfg["batch_size"]
        self.iters_per_epoch = max(len(self.images) // self.batch_size, 1)
        if train_cfg["n_iterations"] is not None:
            self.total_iters = train_cfg["n_iterations"]
        else:
            self.total_iters = train_cfg["n_epoches"] * self.iters_per_epoch
        n_epochs = math.ceil(self.total_iters / self.iters_per_epoch)
        self.optimizer = build_optimizer(self.model, train_cfg["optimizer"], self.device)
        self.scheduler = build_scheduler(self.optimizer, train_cfg["scheduler"], n_epochs)
        self.epoch = self.batch_in_epoch = self.iteration = 0
        self.elapsed_before = 0.0
        self._stop_signal: str | None = None
        threshold = cfg["model"]["empty_cluster_threshold"]
        self.empty_threshold = threshold if threshold is not None else 0.2 / self.model.K

        if resume is not None:
            self._restore(resume)
        elif train_cfg["pretrained"]:
            state = load_checkpoint(train_cfg["pretrained"], self.device)
            self.model.load_state_dict(state["model_state"])
            self.log.info(f"started from the weights of {train_cfg['pretrained']}")
        self.train_table = MetricsTable(self.run_dir / "train_metrics.tsv",
                                        ["iteration", "epoch", "loss", "time_per_img_ms", "lr"]
                                        + [f"prop_{k}" for k in range(self.model.n_candidates)])
        self.monitor = build_monitor(cfg, self.run_dir)
        self.val_table: MetricsTable | None = None  # its columns are the scores of the dataset's kind

    # ---- state --------------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "model_name": MODEL_NAME, "model_kwargs": self.model.kwargs, "model_state": self.model.state_dict(),
            "optimizer_state": self.optimizer.state_dict(), "scheduler_state": self.scheduler.state_dict(),
            "epoch": self.epoch, "batch": self.batch_in_epoch, "iteration": self.iteration, "seed": self.seed,
            "elapsed": self._elapsed(), "rng": rng_state(), "config": self.cfg,
        }

    def _restore(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt["model_state"])
        self.optimizer.load_state_dict(ckpt["optimizer_state"])
        self.scheduler.load_state_dict(ckpt["scheduler_state"])
        self.epoch, self.batch_in_epoch, self.iteration = ckpt["epoch"], ckpt["batch"], ckpt["iteration"]
        self.seed, self.elapsed_before = ckpt["seed"], ckpt["elapsed"]
        set_rng_state(ckpt["rng"])
        self.log.info(f"resumed {self.run_dir} at iteration {self.iteration} (epoch {self.epoch})")

    def save(self) -> Path:
        path = self.run_dir / CHECKPOINT_NAME
        try:
            save_checkpoint(path, self.state())
        except OSError as err:
            raise DTISpritesError(f"cannot write checkpoint {path}: {err.strerror}") from None
        return path

    def _elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self._start if hasattr(self, "_start") else 0.0)

    # ---- loop ---------------------------------------------------------------------------------
    def _epoch_order(self, epoch: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.images), generator=gen)

    def train_step(self, images: torch.Tensor):
        out = self.model(images)
        loss = out.loss.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return out, loss.detach()

    def run(self, max_iterations: int | None = None) -> dict | None:
        """Train to the end (or for max_iterations more steps, then checkpoint and return None).

        SIGTERM and SIGINT stop the loop after the current step with a checkpoint saved.
        """
        with _stop_on_signals(self):
            return self._run(max_iterations)

    def _run(self, max_iterations: int | None) -> dict | None:
        cfg = self.cfg["training"]
        budget = cfg["time_budget"]
        stop_at = self.total_iters if max_iterations is None else min(self.total_iters, self.iteration + max_iterations)
        self._start = time.perf_counter()
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        counts = torch.zeros(self.model.L, self.model.n_candidates, dtype=torch.long, device=self.device)
        cluster_counts = counts.clone()
        window_start, window_iters = time.perf_counter(), 0
        order, order_epoch = None, None
        bar = tqdm(total=self.total_iters, initial=self.iteration, disable=not self.progress, desc="train",
                   unit="it", dynamic_ncols=True)
        while self.iteration < stop_at:
            if order_epoch != self.epoch:
                order, order_epoch = self._epoch_order(self.epoch), self.epoch
            self.model.sprites_frozen = self.epoch < self.cfg["model"]["freeze_sprite"]
            picked = order[self.batch_in_epoch * self.batch_size:(self.batch_in_epoch + 1) * self.batch_size]
            out, loss = self.train_step(self.images.batch(picked))
            loss_sum += loss
            step_counts = assignment_counts(out.sprite_idx, self.model.n_candidates)
            counts += step_counts
            cluster_counts += step_counts
            self.iteration += 1
            self.batch_in_epoch += 1
            window_iters += 1
            bar.update(1)
            if self.batch_in_epoch >= self.iters_per_epoch:
                self._end_epoch()

            if self.iteration % cfg["train_stat_interval"] == 0:
                mean_loss = float(loss_sum) / window_iters
                if not math.isfinite(mean_loss):
                    raise DTISpritesError(f"loss became {mean_loss} at iteration {self.iteration}; "
                                          f"the last good checkpoint is {self.run_dir / CHECKPOINT_NAME}")
                seconds = time.perf_counter() - window_start
                self._log_train(mean_loss, seconds / (window_iters * self.batch_size), counts)
                bar.set_postfix(loss=f"{mean_loss:.4g}")
                loss_sum.zero_()
                counts.zero_()
                window_start, window_iters = time.perf_counter(), 0
            if self.iteration % cfg["check_cluster_interval"] == 0:
                if self.cfg["model"]["reassign_cluster"] and not self.model.sprites_frozen:
                    restarted = reassign_empty_clusters(self.model, self.optimizer, cluster_counts, self.empty_threshold)
                    if restarted:
                        self.log.info(f"iteration {self.iteration}: restarted sprites {restarted}")
                cluster_counts.zero_()
            if self.iteration % cfg["val_stat_interval"] == 0:
                self.validate()
            if budget is not None and self._elapsed() >= budget:
                self.log.info(f"time budget of {budget:g} s reached at iteration {self.iteration}")
                break
            if self._stop_signal is not None:
                self.log.info(f"signal {self._stop_signal} received: checkpointing at iteration {self.iteration}; "
                              f"continue with --set training.resume={self.run_dir}")
                break
        bar.close()
        self.elapsed_before, self._start = self._elapsed(), time.perf_counter()
        self.save()
        if self._stop_signal is not None or (
                self.iteration < self.total_iters and (budget is None or self._elapsed() < budget)):
            return None
        return self.finish()

    def _end_epoch(self) -> None:
        self.epoch += 1
        self.batch_in_epoch = 0
        self.scheduler.step()
        for name in self.model.advance_curricula(self.epoch):
            self.log.info(f"epoch {self.epoch}: curriculum switched on {name}")

    def _log_train(self, loss: float, seconds_per_img: float, counts: torch.Tensor) -> None:
        props = counts.sum(0).double()
        props = (props / props.sum().clamp(min=1)).tolist()
        lr = self.optimizer.param_groups[-1]["lr"]
        row = {"iteration": self.iteration, "epoch": self.epoch, "loss": loss,
               "time_per_img_ms": seconds_per_img * 1000, "lr": lr}
        row.update({f"prop_{k}": p for k, p in enumerate(props)})
        self.train_table.append(row)
        self.monitor.scalars(self.iteration, "train", {"loss": loss, "time_per_img_ms": seconds_per_img * 1000, "lr": lr})
        self.monitor.scalars(self.iteration, "proportions", {str(k): p for k, p in enumerate(props)})
        self.log.info(f"it {self.iteration} epoch {self.epoch} loss {loss:.5f} "
                      f"{seconds_per_img * 1000:.2f} ms/img lr {lr:.2e}")

    def validate(self) -> dict:
        scores = self._evaluate(self.val_set, eval_semantic=False, progress=False)
        headline = {k: v for k, v in scores.items() if not k.startswith("iou_")}
        if self.val_table is None:
            self.val_table = MetricsTable(self.run_dir / "val_metrics.tsv",
                                          ["iteration", "epoch", "seconds", *headline])
        self.val_table.append({"iteration": self.iteration, "epoch": self.epoch, "seconds": self._elapsed(), **headline})
        self.log.info(f"validation it {self.iteration}: " + " ".join(f"{k} {v:.4f}" for k, v in headline.items())
                      + f" ({self._elapsed():.0f} s)")
        self.monitor.scalars(self.iteration, "val", headline)
        self.save()
        grids = save_snapshots(self.model, self.snapshot_images, self.run_dir / "images", self.iteration)
        self.monitor.images(self.iteration, grids)
        return scores

    def finish(self) -> dict:
        """Final images, plots and evaluation on the first 320 images."""
        save_snapshots(self.model, self.snapshot_images, self.run_dir / "images", self.iteration)
        make_gifs(self.run_dir / "images")
        plot_metrics(self.run_dir)
        scores = self.evaluate()
        self.monitor.scalars(self.iteration, "final", {k: v for k, v in scores.items() if not k.startswith("iou_")})
        self.monitor.close()
        write_scores(self.run_dir / "final_scores.tsv", scores)
        (self.run_dir / "final_scores.json").write_text(json.dumps(scores, indent=1))
        self.log.info("final scores: " + " ".join(f"{k} {v:.4f}" for k, v in scores.items() if not k.startswith("iou_")))
        return scores

    def evaluate(self) -> dict:
        return self._evaluate(self.eval_set, self.cfg["training"]["eval_semantic"], self.progress)

    def _evaluate(self, dataset, eval_semantic: bool, progress: bool) -> dict:
        return evaluate_model(self.dataset_entry.kind, self.model, dataset, self.device, batch_size=self.batch_size,
                              eval_semantic=eval_semantic, eval_with_bkg=self.cfg["training"]["eval_with_bkg"],
                              n_classes=self.dataset_entry.n_classes, progress=progress)


@contextlib.contextmanager
def _stop_on_signals(trainer: "Trainer"):
    """Turn SIGTERM/SIGINT into a request to stop cleanly (main thread only)."""
    trainer._stop_signal = None
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def request_stop(signum, frame):
        trainer._stop_signal = signal.Signals(signum).name

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _run_dir_of(path: str) -> Path:
    path = Path(path)
    return path if path.is_dir() else path.parent


def _check_compatible(saved: dict, current: dict) -> None:
    """Refuse to resume with a model config that changes the shape of the run."""
    differ = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if differ:
        raise CheckpointError("checkpoint was trained with another model config; keys that differ: "
                              + ", ".join(f"model.{k} ({saved.get(k)!r} vs {current.get(k)!r})" for k in differ))


logging.getLogger(LOGGER_NAME).addHandler(logging.NullHandler())
