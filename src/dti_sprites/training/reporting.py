"""What a run reports while and after it trains: the training log line, validation (scores,
checkpoint, snapshots) and the final evaluation with its figures and report.

A mixin of `Trainer` (trainer.py), which sets what these methods read: cfg, model, device,
run_dir, dist, log, monitor, iteration, epoch, optimizer, train_table, val_table, val_set,
eval_set, snapshot_images, dataset_entry, batch_size, progress, best_val_loss, save() and
_elapsed(). Kept apart so the loop itself reads on one screen.
"""

import torch

from ..evaluation import evaluate_model, scores_json
from .plots import plot_metrics
from .run_folder import MetricsTable, write_scores
from .snapshots import make_gifs, save_snapshots


def headline_scores(scores: dict) -> dict:
    """The scores a log line, a monitor and val_metrics.tsv show: all but the per-class IoUs."""
    return {k: v for k, v in scores.items() if not k.startswith("iou_")}


class RunReporting:
    """Logging, validation and the end of a run, for `Trainer`."""

    def _log_train(self, loss: float, seconds_per_img: float, counts: torch.Tensor) -> None:
        if not self.dist.is_main:
            return
        props = counts.sum(0).double()
        props = (props / props.sum().clamp(min=1)).tolist()
        lr = self.optimizer.param_groups[-1]["lr"]
        ms_per_img = seconds_per_img * 1000
        scalars = {"loss": loss, "time_per_img_ms": ms_per_img, "lr": lr}
        row = {"iteration": self.iteration, "epoch": self.epoch, **scalars}
        row.update({f"prop_{k}": p for k, p in enumerate(props)})
        self.train_table.append(row)
        self.monitor.scalars(self.iteration, "train", scalars)
        self.monitor.scalars(self.iteration, "proportions", {str(k): p for k, p in enumerate(props)})
        self.log.info(f"it {self.iteration} epoch {self.epoch} loss {loss:.5f} {ms_per_img:.2f} ms/img lr {lr:.2e}")

    def validate(self) -> dict:
        scores = self._evaluate(self.val_set, eval_semantic=False, progress=False)
        headline = headline_scores(scores)
        elapsed = self._elapsed()
        if self.val_table is None:
            self.val_table = MetricsTable(
                self.run_dir / "val_metrics.tsv", ["iteration", "epoch", "seconds", *headline]
            )
        self.val_table.append({"iteration": self.iteration, "epoch": self.epoch, "seconds": elapsed, **headline})
        self.log.info(
            f"validation it {self.iteration}: "
            + " ".join(f"{k} {v:.4f}" for k, v in headline.items())
            + f" ({elapsed:.0f} s)"
        )
        self.monitor.scalars(self.iteration, "val", headline)
        best = scores["loss"] < self.best_val_loss
        self.best_val_loss = min(self.best_val_loss, scores["loss"])
        self.save(best=best)
        grids = save_snapshots(self.model, self.snapshot_images, self.run_dir / "images", self.iteration)
        self.monitor.images(self.iteration, grids)
        return scores

    def finish(self) -> dict:
        """Final images, plots and evaluation on the eval split."""
        save_snapshots(self.model, self.snapshot_images, self.run_dir / "images", self.iteration)
        make_gifs(self.run_dir / "images")
        scores = self.evaluate()
        headline = headline_scores(scores)
        self.monitor.scalars(self.iteration, "final", headline)
        self.monitor.close()
        write_scores(self.run_dir / "final_scores.tsv", scores)
        (self.run_dir / "final_scores.json").write_text(scores_json(scores, indent=1))
        plot_metrics(self.run_dir)  # after the scores: the curves end with the final evaluation
        self.log.info("final scores: " + " ".join(f"{k} {v:.4f}" for k, v in headline.items()))
        # outputs/ sits above training: imported here only. After the scores, so a figure never costs them.
        from ..outputs.figures import write_final_figures
        from ..outputs.report import write_report

        write_final_figures(
            self.model,
            self.eval_set,
            self.run_dir / "images",
            self.device,
            fill_background=not self.cfg["training"]["eval_with_bkg"],
        )
        self.log.info(f"report: {write_report(self.run_dir)}")
        return scores

    def evaluate(self) -> dict:
        return self._evaluate(self.eval_set, self.cfg["training"]["eval_semantic"], self.progress)

    def _evaluate(self, dataset, eval_semantic: bool, progress: bool) -> dict:
        return evaluate_model(
            self.dataset_entry.kind,
            self.model,
            dataset,
            self.device,
            batch_size=self.batch_size,
            eval_semantic=eval_semantic,
            eval_with_bkg=self.cfg["training"]["eval_with_bkg"],
            n_classes=self.dataset_entry.n_classes,
            progress=progress,
        )
