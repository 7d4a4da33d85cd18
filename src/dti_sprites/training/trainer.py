"""The training loop (docs/method.md §2): one object that owns the run and can stop and resume it.

Per iteration: forward with sprite selection, loss, backward, Adam step, and device-side
accumulation of the statistics; values leave the device only at logging intervals. The
order of training images is a pure function of (seed, epoch), so a resumed run sees the
same batches as an uninterrupted one. Under torchrun every rank walks the same order and
trains on its shard of each global batch (see distributed.py); rank 0 writes the run.
"""

import math
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..config_files import save_config
from ..data import build_dataset
from ..errors import ConfigError, DTISpritesError
from ..host_memory import keep_freed_memory
from ..model.sprites_model import DTISprites, compile_model
from ..monitoring import Monitor, build_monitor
from .batches import image_source
from .checkpoint import (
    BEST_CHECKPOINT_NAME,
    CHECKPOINT_NAME,
    check_compatible,
    find_latest_run,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .distributed import (
    DistContext,
    all_reduce_gradients,
    all_reduce_sum,
    broadcast_module,
    broadcast_object,
    use_global_batchnorm,
)
from .memory import check_training_memory
from .optim import apply_schedule, build_optimizer, build_scheduler
from .reporting import RunReporting
from .run_folder import MetricsTable, discard_run_dir, new_run_dir, setup_logger
from .run_info import write_run_info
from .signals import stop_on_signals
from .step_stats import StepStats
from .upkeep import ModelUpkeep
from .weight_average import WeightAverage

N_SNAPSHOT_IMAGES = 4
MODEL_NAME = "dti_sprites"


class Trainer(RunReporting, ModelUpkeep):
    def __init__(
        self,
        cfg: dict,
        device: str | torch.device = "cpu",
        runs_root: str | Path = "runs",
        tag: str = "default",
        progress: bool = True,
        quiet: bool = False,
        dist_ctx: DistContext = DistContext(),
    ):
        """Check data and memory, make the run folder, build everything; a failure removes the
        run folder it made, so a run that cannot start leaves nothing behind."""
        self.new_run_dir: Path | None = None  # set once this process has made a fresh run folder
        self.stop_signal: str | None = None  # SIGINT / SIGTERM, when one stopped run()
        try:
            self._setup(cfg, device, runs_root, tag, progress, quiet, dist_ctx)
        except BaseException:
            if self.new_run_dir is not None:
                discard_run_dir(self.new_run_dir)
            raise

    def _setup(
        self, cfg: dict, device, runs_root, tag: str, progress: bool, quiet: bool, dist_ctx: DistContext
    ) -> None:
        self.cfg, self.device, self.dist = cfg, torch.device(device), dist_ctx
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed batch shapes: let cuDNN time its algorithms once
        else:
            keep_freed_memory()  # the CLI has already; a Trainer built from Python gets it here
        self.progress = progress and dist_ctx.is_main
        train_cfg = cfg["training"]
        resume_from = train_cfg["resume"]
        if resume_from == "auto":
            latest = find_latest_run(runs_root, cfg["dataset"]["name"], tag)
            resume_from = str(latest) if latest is not None else None
        resume = load_checkpoint(resume_from) if resume_from else None
        if resume is not None:
            check_compatible(resume["model_kwargs"]["cfg"], cfg["model"])
        self.train_set, self.dataset_entry = build_dataset(cfg, "train")
        self.val_set, _ = build_dataset(cfg, "val")
        self.eval_set, _ = build_dataset(cfg, "eval")
        check_training_memory(cfg, self.train_set.img_size, self.train_set.n_channels, self.device)
        if resume is not None:
            self.run_dir = Path(resume_from) if Path(resume_from).is_dir() else Path(resume_from).parent
        else:
            run_dir = None
            if dist_ctx.is_main:
                run_dir = self.new_run_dir = new_run_dir(runs_root, cfg["dataset"]["name"], tag)
                save_config(cfg, run_dir / "config.yml")
            self.run_dir = Path(broadcast_object(str(run_dir), dist_ctx))
        self.log = setup_logger(self.run_dir if dist_ctx.is_main else None, quiet or not dist_ctx.is_main)
        seed = train_cfg["seed"] if train_cfg["seed"] is not None else random.randrange(2**31)
        self.seed = broadcast_object(seed, dist_ctx)
        _seed_everything(self.seed)

        skipped = getattr(self.train_set, "skipped", [])
        if skipped:
            self.log.warning(f"skipped {len(skipped)} unreadable file(s), e.g. {skipped[0]}")
        self.images = image_source(
            self.train_set, self.device, train_cfg["resident"], train_cfg["n_workers"], self.progress
        )
        init_gen = torch.Generator().manual_seed(self.seed)
        self.model = DTISprites(
            cfg["model"],
            self.train_set.img_size,
            self.train_set.n_channels,
            lambda n: self.images.sample(n, init_gen),
            self.seed,
        )
        if dist_ctx.enabled:
            use_global_batchnorm(self.model)
        self.model.to(self.device)
        self.model.encoder_bf16 = train_cfg["amp"]
        compile_model(self.model, train_cfg["compile"])
        self.snapshot_images = self.images.batch(torch.arange(min(N_SNAPSHOT_IMAGES, len(self.images))))

        self.batch_size = train_cfg["batch_size"]
        if self.batch_size % dist_ctx.world_size:
            raise ConfigError(
                f"training.batch_size: expected a multiple of the {dist_ctx.world_size} processes, "
                f"got {self.batch_size}"
            )
        self.iters_per_epoch = max(len(self.images) // self.batch_size, 1)
        if train_cfg["n_iterations"] is not None:
            self.total_iters = train_cfg["n_iterations"]
        else:
            self.total_iters = train_cfg["n_epoches"] * self.iters_per_epoch
        n_epochs = math.ceil(self.total_iters / self.iters_per_epoch)
        self.optimizer = build_optimizer(self.model, train_cfg["optimizer"])
        self.scheduler = build_scheduler(self.optimizer, train_cfg["scheduler"], n_epochs)
        self.epoch = self.batch_in_epoch = self.iteration = 0
        self.elapsed_before, self.best_val_loss = 0.0, math.inf
        threshold = cfg["model"]["empty_cluster_threshold"]
        self.empty_threshold = threshold if threshold is not None else 0.2 / self.model.K
        self.stats = StepStats(self.model.L, self.model.n_candidates, self.device)
        self.weight_average = None  # begun at training.average_weights_from
        self.empty_index = self.model.K if self.model.add_empty_sprite else None

        if resume is not None:
            self._restore(resume)
        elif train_cfg["pretrained"]:
            state = load_checkpoint(train_cfg["pretrained"], self.device)
            self.model.load_state_dict(state["model_state"])
            self.log.info(f"started from the weights of {train_cfg['pretrained']}")
        broadcast_module(self.model, dist_ctx)
        self.train_table = self.val_table = None
        self.monitor = Monitor()
        if dist_ctx.is_main:
            self.train_table = MetricsTable(
                self.run_dir / "train_metrics.tsv",
                ["iteration", "epoch", "loss", "time_per_img_ms", "lr"]
                + [f"prop_{k}" for k in range(self.model.n_candidates)],
            )
            self.train_table.truncate_after(self.iteration)
            if (self.run_dir / "val_metrics.tsv").exists():  # resumed: its columns are known
                self.val_table = MetricsTable(self.run_dir / "val_metrics.tsv", [])
                self.val_table.truncate_after(self.iteration)
            self.monitor = build_monitor(cfg, self.run_dir)

    # ---- state --------------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "model_name": MODEL_NAME,
            "model_kwargs": self.model.kwargs,
            "model_state": self.model.state_dict(),
            "optimizer_state": self.optimizer.state_dict(),
            "scheduler_state": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "batch": self.batch_in_epoch,
            "iteration": self.iteration,
            "seed": self.seed,
            "elapsed": self._elapsed(),
            "best_val_loss": self.best_val_loss,
            "rng": rng_state(),
            "config": self.cfg,
            "step_stats": self.stats.state_dict(),
            "weight_average": self.weight_average.state_dict() if self.weight_average else None,
        }

    def _restore(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt["model_state"])
        self.optimizer.load_state_dict(ckpt["optimizer_state"])
        self.scheduler.load_state_dict(ckpt["scheduler_state"])
        apply_schedule(self.scheduler)  # the resumed config's schedule, from this epoch on
        self.epoch, self.batch_in_epoch, self.iteration = ckpt["epoch"], ckpt["batch"], ckpt["iteration"]
        self.seed, self.elapsed_before = ckpt["seed"], ckpt["elapsed"]
        self.best_val_loss = ckpt.get("best_val_loss", math.inf)
        if "step_stats" in ckpt and self.dist.is_main:  # rank 0's windows; other ranks' partial windows are lost
            self.stats.load_state_dict(ckpt["step_stats"])
        set_rng_state(ckpt["rng"])
        if ckpt.get("weight_average") and self._averaging():  # resumed with averaging off or later: no mean
            self.weight_average = WeightAverage(self.model)
            self.weight_average.load_state_dict(ckpt["weight_average"])
        self.log.info(f"resumed {self.run_dir} at iteration {self.iteration} (epoch {self.epoch})")

    def save(self, best: bool = False) -> Path | None:
        """Write the last checkpoint (rank 0 only); `best` also copies it to model_best.pkl."""
        if not self.dist.is_main:
            return None
        path = self.run_dir / CHECKPOINT_NAME
        try:
            save_checkpoint(path, self.state())
            if best:
                tmp = path.with_name(f".{BEST_CHECKPOINT_NAME}.tmp")
                shutil.copyfile(path, tmp)
                tmp.replace(self.run_dir / BEST_CHECKPOINT_NAME)
        except OSError as err:
            raise DTISpritesError(
                f"cannot write checkpoint {path}: {err.strerror}; the previous checkpoint is intact"
            ) from None
        return path

    def _elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self._start if hasattr(self, "_start") else 0.0)

    # ---- loop ---------------------------------------------------------------------------------
    def _epoch_order(self, epoch: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.images), generator=gen)

    def _epoch_batches(self):
        """This rank's batches for the rest of the current epoch, from batch_in_epoch on."""
        order = self._epoch_order(self.epoch)
        B = self.batch_size
        chunks = [self._shard(order[b * B : (b + 1) * B]) for b in range(self.batch_in_epoch, self.iters_per_epoch)]
        return iter(self.images.batches(chunks))

    def _shard(self, picked: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous part of the global batch."""
        n = picked.shape[0] // self.dist.world_size
        return picked[self.dist.rank * n : (self.dist.rank + 1) * n]

    def train_step(self, images: torch.Tensor):
        """One step; returns the decomposition and the batch's mean loss (the learned selection's
        usage terms are optimised but not logged, so that losses compare across selections)."""
        out = self.model(images)
        self.optimizer.zero_grad(set_to_none=True)
        out.objective().backward()
        if self.dist.enabled:
            all_reduce_gradients(self.model.parameters(), self.dist.world_size)
        self.optimizer.step()
        return out, out.loss.detach().mean()

    def run(self, max_iterations: int | None = None) -> dict | None:
        """Train to the end, then evaluate and return the scores.

        Returns None when stopped early (max_iterations more steps done, a SIGTERM/SIGINT)
        after writing a checkpoint to resume from.
        """
        with stop_on_signals() as stop:
            stopped = self._loop(max_iterations, stop)
        self.stop_signal = stop.signal_name if stopped else None
        if not stopped and self.weight_average is not None:
            self.weight_average.copy_into_model()  # the final model is the mean
        self.save()
        if self.dist.is_main:
            write_run_info(self, stop)
        if stopped:
            return None
        return self.finish() if self.dist.is_main else None

    def _loop(self, max_iterations: int | None, stop) -> bool:
        """Iterate; return True when stopped before the end of training."""
        cfg = self.cfg["training"]
        budget = cfg["time_budget"]
        stop_at = self.total_iters if max_iterations is None else min(self.total_iters, self.iteration + max_iterations)
        self._start = time.perf_counter()
        self.model.train()
        stats = self.stats
        window_start, timed_iters = time.perf_counter(), 0  # wall time covers this process's iterations only
        batches, batches_epoch = None, None
        bar = tqdm(
            total=self.total_iters,
            initial=self.iteration,
            disable=not self.progress,
            desc="train",
            unit="it",
            dynamic_ncols=True,
        )
        while self.iteration < stop_at:
            if batches_epoch != self.epoch:
                batches, batches_epoch = self._epoch_batches(), self.epoch
            self.model.sprites_frozen = self.epoch < self.cfg["model"]["freeze_sprite"]
            if self.model.selector is not None:
                self.model.selector.iteration = self.iteration  # its temperature schedule
            out, loss = self.train_step(next(batches))
            stats.add(loss, out.sprite_idx, out.object_masks, self.empty_index)
            self.iteration += 1
            self._average_weights()
            self.batch_in_epoch += 1
            timed_iters += 1
            bar.update(1)
            if self.batch_in_epoch >= self.iters_per_epoch:
                self._end_epoch()

            if self.iteration % cfg["train_stat_interval"] == 0:
                mean_loss = float(all_reduce_sum(stats.loss_sum, self.dist)) / (
                    stats.window_iters * self.dist.world_size
                )
                all_reduce_sum(stats.counts, self.dist)
                if not math.isfinite(mean_loss):
                    raise DTISpritesError(
                        f"loss became {mean_loss} at iteration {self.iteration}; "
                        f"the last good checkpoint is {self.run_dir / CHECKPOINT_NAME}"
                    )
                seconds = time.perf_counter() - window_start
                self._log_train(mean_loss, seconds / (timed_iters * self.batch_size), stats.counts)
                bar.set_postfix(loss=f"{mean_loss:.4g}")
                stats.reset_window()
                window_start, timed_iters = time.perf_counter(), 0
            if self.iteration % cfg["check_cluster_interval"] == 0:
                self._reassign(all_reduce_sum(stats.cluster_counts, self.dist))
                self._restart_dead_layers(
                    all_reduce_sum(stats.layer_area, self.dist), all_reduce_sum(stats.layer_drawn, self.dist)
                )
                stats.reset_cluster_window()
            if self.iteration % cfg["val_stat_interval"] == 0 and self.dist.is_main:
                self.validate()
            reason = self._stop_reason(budget, stop)
            if reason is not None:
                bar.close()
                return reason == "signal"  # the budget ends training: evaluate as at the end
        bar.close()
        return self.iteration < self.total_iters

    def _stop_reason(self, budget: float | None, stop) -> str | None:
        """ "budget", "signal" or None; under torchrun rank 0 decides for everyone."""
        reason = None
        if budget is not None and self._elapsed() >= budget:
            reason = "budget"
            self.log.info(f"iteration {self.iteration}: time budget of {budget:g} s reached")
        elif stop:
            reason = "signal"
            self.log.info(
                f"iteration {self.iteration}: signal {stop.signal_name} received; "
                f"continue with --set training.resume={self.run_dir}"
            )
        return broadcast_object(reason, self.dist) if self.dist.enabled else reason

    def _end_epoch(self) -> None:
        self.epoch += 1
        self.batch_in_epoch = 0
        self.scheduler.step()
        for name in self.model.advance_curricula(self.epoch):
            self.log.info(f"epoch {self.epoch}: curriculum switched on {name}")


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
