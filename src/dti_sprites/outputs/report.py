"""A run as one self-contained HTML page (`<run>/report.html`), readable offline.

The header says how the run went (finished or stopped early, iterations done of planned,
wall time, machine, seed; from run_info.json), then the final scores with what they cover
and the names of the classes, sprites and masks with their evolution (GIF), curves,
reconstructions and segmentations, config. Every picture is embedded as a base64 data URI,
so the single file can be mailed or archived. Written by the trainer at the end of a run and
by `python -m dti_sprites report --run RUN_DIR` for any run folder (what is missing is
listed, not fatal).
"""

import base64
import datetime
import html
import json
from pathlib import Path

import yaml

from ..palette import sprite_colour
from ..training.plots import interval_warnings, read_metrics
from ..training.run_info import read_run_info, split_descriptions
from .class_names import class_names, classes_note

REPORT_NAME = "report.html"
MAX_EMBED_BYTES = 8 * 2**20  # a larger file is linked, not embedded
MAX_SHOWN_PX = 1060  # the page's width
PER_CLASS_PREFIXES = ("iou_", "acc_")  # per-class scores go to their own table
OPTIONAL = {"images/backgrounds.png", "images/backgrounds.gif"}  # models without a background have none

# (section title, [(file under the run folder, caption)])
SECTIONS = [
    (
        "Sprites",
        [
            ("images/masked_sprites.png", "sprites × masks"),
            ("images/masked_sprites.gif", "evolution during training"),
            ("images/sprites.png", "appearances"),
            ("images/sprites.gif", "appearances during training"),
            ("images/masks.png", "masks"),
            ("images/masks.gif", "masks during training"),
            ("images/backgrounds.png", "backgrounds"),
            ("images/backgrounds.gif", "backgrounds during training"),
        ],
    ),
    (
        "Curves",
        [
            ("plots/loss.png", "loss: training, validation, final (★)"),
            ("plots/proportions.png", "share of each sprite (colours as in the semantic segmentation)"),
            ("plots/scores.png", "scores: validation and final (★)"),
        ],
    ),
    (
        "Decompositions",
        [
            ("images/segmentation_instances.png", "input | reconstruction | instances (one colour per layer)"),
            ("images/segmentation_semantic.png", "input | reconstruction | sprites (colours in the legend below)"),
            ("images/layers_32.png", "input | reconstruction | object layers"),
            ("images/reconstructions_32.png", "input | reconstruction"),
            (
                "images/transformed_sprites.png",
                "every sprite as placed: a row per fixed training image and layer "
                "(image 1 layer 1, image 1 layer 2, ...), a column per sprite",
            ),
            ("images/transformed_sprites.gif", "the same during training"),
            ("images/reconstructions.png", "4 fixed images and their reconstructions"),
        ],
    ),
]

SCORE_MEANINGS = {
    "loss": "mean reconstruction error (squared, per pixel)",
    "ari": "adjusted Rand index of the instance segmentation, all pixels, mean over images",
    "ari_fg": "the same on ground-truth foreground pixels only",
    "ari_fg_filled": "ari_fg after giving uncovered pixels to the layer of closest colour (the paper's ARI-FG)",
    "global_acc": "pixels whose sprite, matched to a class, is their true class",
    "mean_acc": "accuracy of each class, averaged over the classes",
    "mean_iou": "intersection over union of each class, averaged",
    "global_acc_fg": "global_acc without the background class",
    "mean_acc_fg": "mean_acc without the background class",
    "mean_iou_fg": "mean_iou without the background class",
    "nmi": "normalised mutual information of sprites and classes",
    "acc": "images whose sprite, mapped to a class, is their class",
    "iou": "foreground intersection over union",
    "swapped": "1 when the model's background is the object",
}
COSEG_MEANINGS = {"acc": "pixels correctly foreground or background"}

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2em; } .meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
td, th { border: 1px solid #ccc; padding: 3px 10px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
table.facts td, td.name { text-align: left; } td.why { text-align: left; color: #555; font-size: 0.9em; }
.status { display: inline-block; padding: 2px 10px; border-radius: 4px; font-weight: 600; color: white; }
.finished { background: #2a7d3a; } .stopped { background: #b3541e; } .unknown { background: #777; }
figure { display: inline-block; margin: 0 1.2em 1.2em 0; vertical-align: top; }
figure img { image-rendering: pixelated; max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; color: #555; max-width: 1060px; }
.swatch { display: inline-block; margin: 0 0.8em 0.3em 0; font-size: 0.85em; }
.swatch b { display: inline-block; width: 1em; height: 1em; vertical-align: middle; margin-right: 0.3em; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.missing, .warning { color: #a33; font-size: 0.9em; }
"""

MIME = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".svg": "image/svg+xml"}


def _data_uri(path: Path) -> str:
    return f"data:{MIME[path.suffix.lower()]};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _figure(path: Path, caption: str, rel: str) -> str:
    if path.stat().st_size > MAX_EMBED_BYTES:
        return (
            f'<figure><a href="{html.escape(rel)}">{html.escape(rel)}</a><figcaption>{html.escape(caption)} '
            f"(too large to embed)</figcaption></figure>"
        )
    width = _shown_width(path)
    style = f' style="width:{width}px"' if width else ""
    return (
        f'<figure><img src="{_data_uri(path)}" alt="{html.escape(rel)}"{style}>'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _shown_width(path: Path) -> int | None:
    """Display width: a GIF as wide as its PNG (frames are stored small), a small PNG doubled;
    pixelated rendering keeps enlarged pictures sharp."""
    sibling = path.with_suffix(".png")
    if path.suffix.lower() == ".gif" and sibling.is_file():
        width = _image_width(sibling)
    else:
        width = _image_width(path)
        width = 2 * width if width and width < MAX_SHOWN_PX // 2 else width
    return min(width, MAX_SHOWN_PX) if width else None


def _image_width(path: Path) -> int | None:
    try:
        from PIL import Image

        with Image.open(path) as img:
            return img.width
    except OSError:
        return None


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"  # undefined, e.g. the IoU of a class absent from the images
    return f"{value:.4f}" if isinstance(value, float) else html.escape(str(value))


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def _read_yaml(path: Path) -> dict:
    try:
        return yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}


# ---- header ---------------------------------------------------------------------------------
def _header(run: Path, info: dict | None, config: dict) -> str:
    """Status badge and the facts of the run, from run_info.json (or what the folder shows)."""
    rows = []
    if info is None:
        last = read_metrics(run / "train_metrics.tsv").get("iteration", []) + read_metrics(run / "val_metrics.tsv").get(
            "iteration", []
        )
        badge = "<span class='status unknown'>status unknown</span>"
        rows.append(("status", "run_info.json is absent: a run written before it existed, or still training"))
        if last:
            rows.append(("iterations", f"at least {int(max(last)):,} (last logged)"))
    else:
        kind = "finished" if info["status"] == "finished" else "stopped"
        badge = f"<span class='status {kind}'>{html.escape(info['status_text'])}</span>"
        done, planned = info["iterations"], info["planned_iterations"]
        share = 100 * done / max(planned, 1)
        rows.append(
            (
                "iterations",
                f"{done:,} of {planned:,} planned ({share:.{1 if share < 10 else 0}f}%), "
                f"{info['epochs']} epoch{'' if info['epochs'] == 1 else 's'}",
            )
        )
        budget = f" (time budget {info['time_budget']:g} s)" if info.get("time_budget") else ""
        rows.append(
            (
                "wall time",
                f"{_duration(info['wall_seconds'])}{budget}: training and validations, "
                "all sessions; final evaluation excluded",
            )
        )
        processes = f" × {info['processes']} processes" if info.get("processes", 1) > 1 else ""
        rows.append(("machine", f"{info['machine']} ({info['device']}){processes}"))
        rows.append(("seed", str(info["seed"])))
        rows.append(("software", f"torch {info['torch']}, Python {info['python']}"))
        rows.append(("data", f"{info['dataset']} ({info['benchmark']}): {info['images']['train']:,} training images"))
        rows.append(("recorded", info["written"].replace("T", " ")))
    if info is None and config.get("training", {}).get("seed") is not None:
        rows.append(("seed", str(config["training"]["seed"])))
    cells = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<p>{badge}</p><table class='facts'>{cells}</table>"


# ---- scores ---------------------------------------------------------------------------------
def _scores_section(run: Path, scores: dict, info: dict | None, config: dict) -> str:
    words = split_descriptions(info)
    benchmark = info.get("benchmark") if info else None
    headline = {k: v for k, v in scores.items() if not k.startswith(PER_CLASS_PREFIXES)}
    per_class = {k: v for k, v in scores.items() if k.startswith(PER_CLASS_PREFIXES)}
    val = read_metrics(run / "val_metrics.tsv")
    last_val = {k: v[-1] for k, v in val.items()} if val.get("iteration") else {}
    val_head = f"<th>last validation (iteration {int(last_val['iteration']):,})</th>" if last_val else ""
    meanings = {**SCORE_MEANINGS, **(COSEG_MEANINGS if benchmark == "cosegmentation" else {})}
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td>"
        + (f"<td>{_fmt(last_val[k]) if k in last_val else ''}</td>" if last_val else "")
        + f"<td class='why'>{html.escape(meanings.get(k, ''))}</td></tr>"
        for k, v in headline.items()
    )
    out = [
        f"<p>Final scores on <b>{html.escape(words['eval'])}</b> (the eval split); validation curves and "
        f"the last validation on <b>{html.escape(words['val'])}</b>.</p>",
        f"<table><tr><th>score</th><th>final</th>{val_head}<th>what it measures</th></tr>{rows}</table>",
    ]
    if per_class:
        out.append(_per_class_table(per_class, info, config))
    return "".join(out)


def _per_class_table(per_class: dict, info: dict | None, config: dict) -> str:
    prefix = next(iter(per_class)).split("_", 1)[0] + "_"
    suffixes = [k[len(prefix) :] for k in per_class]
    ids = [int(s) for s in suffixes if s.isdigit()]
    n_classes = (info or {}).get("n_classes") or (max(ids) + 1 if ids else 0)
    dataset = (info or {}).get("dataset") or config.get("dataset", {}).get("name")
    names = class_names(dataset, n_classes)
    model = config.get("model", {})
    kind = (info or {}).get("benchmark") or ("multi_object" if prefix == "iou_" else "clustering")
    note = classes_note(n_classes, model.get("n_sprites"), bool(model.get("add_empty_sprite")), kind)
    what = "IoU" if prefix == "iou_" else "accuracy"
    rows = "".join(
        f"<tr><td>{html.escape(s)}</td>"
        f"<td class='name'>{html.escape(names[int(s)] if s.isdigit() and int(s) < len(names) else s)}</td>"
        f"<td>{_fmt(per_class[prefix + s])}</td></tr>"
        for s in suffixes
    )
    return (
        f"<details open><summary>{what} of each class ({len(suffixes)})</summary>"
        f"<p class='meta'>{html.escape(note)}</p>"
        f"<table><tr><th>class</th><th>name</th><th>{what}</th></tr>{rows}</table></details>"
    )


def _sprite_legend(config: dict) -> str:
    """Swatches of the sprite colours used by the semantic segmentation and the proportions."""
    model = config.get("model", {})
    n = model.get("n_sprites")
    if not isinstance(n, int) or n < 1:
        return ""
    swatches = "".join(
        f"<span class='swatch'><b style='background:{_hex(sprite_colour(k))}'></b>sprite {k}</span>" for k in range(n)
    )
    extra = "<span class='swatch'><b style='background:#000'></b>no object (background)</span>"
    return f"<div>{swatches}{extra}</div>"


def _hex(rgb: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{round(255 * c):02x}" for c in rgb)


def _last_lines(path: Path, n: int) -> str:
    if not path.is_file():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:])


def build_report(run_dir: str | Path) -> str:
    """The HTML text of a run's report."""
    run = Path(run_dir)
    title = f"{run.parent.name} / {run.name}"
    info, config = read_run_info(run), _read_yaml(run / "config.yml")
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='meta'>DTI-Sprites run report, written {datetime.datetime.now():%Y-%m-%d %H:%M} "
        f"from {html.escape(str(run.resolve()))}</p>",
        _header(run, info, config),
    ]
    scores_path = run / "final_scores.json"
    parts.append("<h2>Final scores</h2>")
    if scores_path.is_file():
        parts.append(_scores_section(run, json.loads(scores_path.read_text()), info, config))
    else:
        parts.append("<p class='missing'>final_scores.json is absent: the run has not finished.</p>")
    missing = []
    for section, entries in SECTIONS:
        figures = []
        for rel, caption in entries:
            path = run / rel
            if path.is_file():
                figures.append(_figure(path, caption, rel))
                if rel == "images/segmentation_semantic.png":
                    figures.append(_sprite_legend(config))
            elif rel not in OPTIONAL:
                missing.append(rel)
        warnings = interval_warnings(run) if section == "Curves" else []
        figures += [f"<p class='warning'>{html.escape(line)}</p>" for line in warnings]
        if figures:
            parts.append(f"<h2>{section}</h2>" + "".join(figures))
    parts.append("<h2>Config</h2>")
    config_path = run / "config.yml"
    parts.append(
        f"<pre>{html.escape(config_path.read_text())}</pre>"
        if config_path.is_file()
        else "<p class='missing'>config.yml is absent.</p>"
    )
    log_tail = _last_lines(run / "train.log", 25)
    if log_tail:
        parts.append(f"<h2>End of train.log</h2><pre>{html.escape(log_tail)}</pre>")
    if missing:
        parts.append(
            "<p class='missing'>Not in this run folder: " + ", ".join(html.escape(m) for m in missing) + "</p>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(run_dir: str | Path) -> Path:
    """Write <run>/report.html (atomically) and return its path."""
    run = Path(run_dir)
    target = run / REPORT_NAME
    tmp = run / f".{REPORT_NAME}.tmp"
    tmp.write_text(build_report(run), encoding="utf-8")
    tmp.replace(target)
    return target
