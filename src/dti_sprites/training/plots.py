"""Curves of a run (losses, sprite proportions, validation scores) as PNG and PDF.

The curves end with the final evaluation (a star at the last iteration), score axes zoom on
the data, and each sprite keeps its colour of the semantic segmentations with a legend. A
run shorter than its logging intervals gets a warning instead of silently missing curves.
"""

import csv
import json
import logging
import math
from pathlib import Path

import matplotlib
import yaml

matplotlib.use("Agg")  # no display on training machines
import matplotlib.pyplot as plt  # noqa: E402

from ..palette import sprite_colour  # noqa: E402
from .run_folder import LOGGER_NAME  # noqa: E402
from .run_info import read_run_info, split_descriptions  # noqa: E402

NON_SCORES = ("iteration", "epoch", "seconds", "loss")
SCORE_MARGIN = 0.03  # around the data on the score axis
MIN_SCORE_SPAN = 0.1

log = logging.getLogger(LOGGER_NAME)


def read_metrics(path: Path) -> dict[str, list[float]]:
    """A metrics TSV as column -> values (nan where empty); {} when absent."""
    if not path.is_file():
        return {}
    with open(path) as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    columns: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            try:
                columns.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                columns.setdefault(key, []).append(float("nan"))
    return columns


def _read_config(run_dir: Path) -> dict:
    try:
        return yaml.safe_load((run_dir / "config.yml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}


def _read_final(run_dir: Path) -> dict[str, float]:
    """The final scores that are numbers (an undefined score is stored as null)."""
    try:
        scores = json.loads((run_dir / "final_scores.json").read_text())
    except (OSError, ValueError):
        return {}
    return {k: float(v) for k, v in scores.items() if isinstance(v, (int, float))}


def interval_warnings(run_dir: Path) -> list[str]:
    """One line per curve the run is too short to have (interval longer than the run)."""
    info = read_run_info(run_dir)
    training = _read_config(run_dir).get("training", {})
    if not info:
        return []
    done = info["iterations"]
    lines = []
    for key, what in (
        ("train_stat_interval", "training curves (loss, sprite proportions)"),
        ("val_stat_interval", "validation curves"),
    ):
        interval = training.get(key)
        if isinstance(interval, int) and interval > done:
            lines.append(
                f"no {what}: training.{key} is {interval}, longer than the {done} iterations run; "
                f"set it below {done} (e.g. --set training.{key}={max(1, done // 10)})"
            )
    return lines


def score_limits(values: list[float]) -> tuple[float, float]:
    """A y range that shows the spread of scores in [0, 1] (0.7-0.9 is not squashed into 0-1)."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    low, high = min(finite) - SCORE_MARGIN, max(finite) + SCORE_MARGIN
    if high - low < MIN_SCORE_SPAN:
        centre = (low + high) / 2
        low, high = centre - MIN_SCORE_SPAN / 2, centre + MIN_SCORE_SPAN / 2
    return max(low, min(0.0, min(finite))), min(high, max(1.0, max(finite)))


def _sprite_label(k: int, n_sprites: int | None) -> str:
    return "empty" if n_sprites is not None and k >= n_sprites else f"sprite {k}"


def _loss_figure(train, val, final, final_it, eval_words):
    fig, ax = plt.subplots(figsize=(7, 4))
    few = len(train.get("iteration", [])) < 3
    if train:
        ax.plot(train["iteration"], train["loss"], label="train (running mean)", marker="o" if few else None)
    if val:
        ax.plot(val["iteration"], val["loss"], label="validation", marker=".")
    if "loss" in final and final_it is not None:
        ax.plot([final_it], [final["loss"]], "*", markersize=12, color="black", label=f"final: {eval_words}")
    ax.set(xlabel="iteration", ylabel="loss (MSE)", yscale="log", title="loss")
    ax.set_xlim(left=0)
    ax.legend(fontsize="small")
    return fig


def _proportions_figure(train, n_sprites):
    props = sorted((k for k in train if k.startswith("prop_")), key=lambda k: int(k[5:]))
    if not props:
        return None
    ids = [int(k[5:]) for k in props]
    labels = [_sprite_label(k, n_sprites) for k in ids]
    colours = [(0.6, 0.6, 0.6) if label == "empty" else sprite_colour(k) for k, label in zip(ids, labels)]
    its = train["iteration"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if len(its) > 1:
        ax.stackplot(its, [train[k] for k in props], labels=labels, colors=colours)
        ax.set_xlim(its[0], its[-1])
    else:  # one logged window: an area of zero width would not show, a stacked bar does
        bottom = 0.0
        for key, label, colour in zip(props, labels, colours):
            ax.bar(its, train[key], bottom=bottom, label=label, color=colour, width=max(its[0] * 0.2, 0.5))
            bottom += train[key][0]
    ax.set(
        xlabel="iteration",
        ylabel="share of layers",
        ylim=(0, 1),
        title="sprite proportions (colours as in the semantic segmentation)",
    )
    handles, labels = ax.get_legend_handles_labels()
    # Reversed so the legend reads top to bottom like the stack.
    ax.legend(
        handles[::-1],
        labels[::-1],
        loc="upper left",
        bbox_to_anchor=(1.01, 1),
        fontsize="x-small",
        ncol=1 if len(ids) <= 20 else 2,
        frameon=False,
    )
    return fig


def _scores_figure(val, final, final_it, eval_words, val_words):
    keys = [k for k in val if k not in NON_SCORES]
    final_keys = [k for k in final if k in keys] if final else []
    if not keys:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    values = []
    for i, key in enumerate(keys):
        colour = f"C{i % 10}"
        ax.plot(val["iteration"], val[key], label=f"{key} (validation)", marker=".", color=colour)
        values += val[key]
        if key in final_keys and final_it is not None:
            ax.plot([final_it], [final[key]], "*", markersize=12, color=colour, label=f"{key} final")
            values.append(final[key])
    ax.set(
        xlabel="iteration",
        ylabel="score",
        ylim=score_limits(values),
        title=f"scores: validation on {val_words}; ★ final on {eval_words}",
    )
    ax.title.set_fontsize("small")
    ax.legend(fontsize="small")
    return fig


def curve_figures(run_dir: Path) -> dict[str, "plt.Figure"]:
    """name -> matplotlib figure of the curves the run folder has data for (logs a warning
    for each curve the run was too short to get)."""
    run_dir = Path(run_dir)
    train, val = read_metrics(run_dir / "train_metrics.tsv"), read_metrics(run_dir / "val_metrics.tsv")
    train = train if train.get("iteration") else {}
    val = val if val.get("iteration") else {}
    final, info = _read_final(run_dir), read_run_info(run_dir)
    final_it = info["iterations"] if info else max(train.get("iteration", []) + val.get("iteration", []), default=None)
    words = split_descriptions(info)
    n_sprites = _read_config(run_dir).get("model", {}).get("n_sprites")
    for line in interval_warnings(run_dir):
        log.warning(f"warning: {line}")
    figures = {}
    if train or val or final:
        figures["loss"] = _loss_figure(train, val, final, final_it, words["eval"])
    if train:
        figures["proportions"] = _proportions_figure(train, n_sprites)
    if val:
        figures["scores"] = _scores_figure(val, final, final_it, words["eval"], words["val"])
    return {name: fig for name, fig in figures.items() if fig is not None}


def plot_metrics(run_dir: Path) -> list[Path]:
    """Write plots/{loss,proportions,scores}.{png,pdf}; return the files written."""
    out = Path(run_dir) / "plots"
    out.mkdir(exist_ok=True)
    written = []
    for name, fig in curve_figures(run_dir).items():
        fig.tight_layout()
        for ext in ("png", "pdf"):
            path = out / f"{name}.{ext}"
            fig.savefig(path, dpi=110)
            written.append(path)
        plt.close(fig)
    return written
