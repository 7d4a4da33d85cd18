"""How a run went, in one small file (`<run>/run_info.json`) that the report's header reads.

Written by rank 0 when the loop ends, before the final evaluation: whether training
finished or stopped early (time budget, signal), iterations done and planned, wall time
(validations included, summed over resumed sessions), machine, seed and versions. A
resumed run rewrites it. Before, a run stopped by its budget said so only in its log.
"""

import datetime
import json
import os
import platform
from pathlib import Path

import torch

RUN_INFO_NAME = "run_info.json"

STATUS_TEXT = {
    "finished": "finished",
    "budget": "stopped early: time budget reached",
    "signal": "stopped early: signal received (resumable)",
    "paused": "paused: iteration limit of this session reached (resumable)",
}


def machine_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model line with its core count."""
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"Apple GPU (MPS) on {platform.machine()}"
    return f"{_cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def run_status(iteration: int, planned: int, stop, budget: float | None, elapsed: float) -> str:
    """finished, budget, signal or paused (a caller's iteration limit), from the loop's end state."""
    if stop:
        return "signal"
    if iteration >= planned:
        return "finished"
    if budget is not None and elapsed >= budget:
        return "budget"
    return "paused"


def write_run_info(trainer, stop) -> Path:
    """Write <run>/run_info.json for a trainer whose loop just ended; `stop` is its StopRequest."""
    budget = trainer.cfg["training"]["time_budget"]
    elapsed = trainer._elapsed()
    status = run_status(trainer.iteration, trainer.total_iters, stop, budget, elapsed)
    info = {
        "status": status,
        "status_text": STATUS_TEXT[status],
        "signal": getattr(stop, "signal_name", None),
        "iterations": trainer.iteration,
        "planned_iterations": trainer.total_iters,
        "epochs": trainer.epoch,
        "wall_seconds": round(elapsed, 1),
        "time_budget": budget,
        "device": str(trainer.device),
        "machine": machine_name(trainer.device),
        "processes": trainer.dist.world_size,
        "seed": trainer.seed,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "dataset": trainer.cfg["dataset"]["name"],
        "benchmark": trainer.dataset_entry.kind,
        "n_classes": trainer.dataset_entry.n_classes,
        "images": {"train": len(trainer.train_set), "val": len(trainer.val_set), "eval": len(trainer.eval_set)},
        "written": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    path = Path(trainer.run_dir) / RUN_INFO_NAME
    tmp = path.with_name(f".{RUN_INFO_NAME}.tmp")
    tmp.write_text(json.dumps(info, indent=1))
    tmp.replace(path)
    trainer.log.info(f"run info: {info['status_text']} at iteration {trainer.iteration} of {trainer.total_iters}")
    return path


def read_run_info(run_dir: str | Path) -> dict | None:
    """The run's run_info.json, or None when absent or unreadable (older runs, runs in progress)."""
    path = Path(run_dir) / RUN_INFO_NAME
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def split_descriptions(info: dict | None) -> dict[str, str]:
    """What the final scores and the validation curves cover, in words (docs/method.md §3)."""
    if not info or "images" not in info:
        return {"eval": "the eval split", "val": "the validation images"}
    n_eval, n_val = info["images"]["eval"], info["images"]["val"]
    first = "the first" if info.get("benchmark") == "multi_object" else "all"
    return {
        "eval": f"{first} {n_eval:,} images of the training set",
        "val": f"{n_val:,} fixed images of the training set",
    }
