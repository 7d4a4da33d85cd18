"""Quality against wall time, for several runs on one figure: how a machine's minutes turn into
scores. Reference curves measured elsewhere (e.g. the original release on the same CPU) can
be drawn beside them from `minutes:score` pairs.
"""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..errors import DTISpritesError  # noqa: E402
from ..training.plots import read_metrics  # noqa: E402


def parse_reference(text: str) -> tuple[str, list[tuple[float, float]]]:
    """`label=3:0.36,6:0.55` -> ("label", [(3.0, 0.36), (6.0, 0.55)])."""
    label, sep, points = text.partition("=")
    try:
        if not sep or not label.strip():
            raise ValueError
        pairs = [tuple(float(v) for v in point.split(":")) for point in points.split(",")]
        if any(len(pair) != 2 for pair in pairs):
            raise ValueError
    except ValueError:
        raise DTISpritesError(f"--reference {text!r}: expected LABEL=MINUTES:SCORE,MINUTES:SCORE,...") from None
    return label.strip(), [(m, s) for m, s in pairs]


def run_curve(run_dir: Path, metric: str) -> tuple[list[float], list[float], float | None]:
    """Validation `metric` against minutes of training, and the held-out score when the run
    folder has one (heldout_scores.json, written by `multi_pipeline.sh eval_data=...`)."""
    val = read_metrics(Path(run_dir) / "val_metrics.tsv")
    if not val.get("seconds") or metric not in val:
        raise DTISpritesError(f"{run_dir}: val_metrics.tsv has no 'seconds' and {metric!r} columns to plot")
    minutes = [s / 60 for s in val["seconds"]]
    heldout = None
    path = Path(run_dir) / "heldout_scores.json"
    if path.is_file():
        value = json.loads(path.read_text() or "{}").get(metric)
        heldout = float(value) if isinstance(value, (int, float)) else None
    return minutes, val[metric], heldout


def time_curves(
    runs: dict[str, Path],
    references: dict[str, list[tuple[float, float]]],
    out: Path,
    metric: str = "ari_fg",
    title: str = "",
) -> Path:
    """Write a PNG of `metric` against minutes: one line per run (validation points, a star at
    its held-out score), one dashed line per reference."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (label, run_dir) in enumerate(runs.items()):
        minutes, values, heldout = run_curve(run_dir, metric)
        ax.plot(minutes, values, marker=".", color=f"C{i}", label=f"{label} (validation)")
        if heldout is not None:
            ax.plot([minutes[-1]], [heldout], "*", markersize=12, color=f"C{i}", label=f"{label}: held-out, end")
    for j, (label, points) in enumerate(references.items()):
        ax.plot(
            [m for m, _ in points], [s for _, s in points], "--", marker="x", color=f"C{len(runs) + j}", label=label
        )
    ax.set(xlabel="minutes of training", ylabel=metric, ylim=(0, 1), title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
