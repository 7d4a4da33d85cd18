"""Curves of a run (losses, sprite proportions, validation scores) as PNG and PDF."""

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on training machines
import matplotlib.pyplot as plt  # noqa: E402


def _read_tsv(path: Path) -> dict[str, list[float]]:
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


def plot_metrics(run_dir: Path) -> list[Path]:
    """Write plots/{loss,proportions,scores}.{png,pdf}; return the files written."""
    out = run_dir / "plots"
    out.mkdir(exist_ok=True)
    train, val = _read_tsv(run_dir / "train_metrics.tsv"), _read_tsv(run_dir / "val_metrics.tsv")
    written = []
    figures = []
    if train:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(train["iteration"], train["loss"], label="train")
        if val:
            ax.plot(val["iteration"], val["loss"], label="val")
        ax.set(xlabel="iteration", ylabel="loss (MSE)", yscale="log", title="loss")
        ax.legend()
        figures.append(("loss", fig))
        props = sorted((k for k in train if k.startswith("prop_")), key=lambda k: int(k[5:]))
        if props:
            fig, ax = plt.subplots(figsize=(6, 4))
            ax.stackplot(train["iteration"], [train[k] for k in props], labels=[k[5:] for k in props])
            ax.set(xlabel="iteration", ylabel="share of layers", title="sprite proportions", ylim=(0, 1))
            figures.append(("proportions", fig))
    if val:
        score_keys = [k for k in val if k not in ("iteration", "epoch", "seconds", "loss")]
        if score_keys:
            fig, ax = plt.subplots(figsize=(6, 4))
            for key in score_keys:
                ax.plot(val["iteration"], val[key], label=key, marker=".")
            ax.set(xlabel="iteration", ylabel="score", title="validation scores", ylim=(0, 1))
            ax.legend()
            figures.append(("scores", fig))
    for name, fig in figures:
        fig.tight_layout()
        for ext in ("png", "pdf"):
            path = out / f"{name}.{ext}"
            fig.savefig(path)
            written.append(path)
        plt.close(fig)
    return written
