"""A run as one self-contained HTML page (`<run>/report.html`), readable offline.

Config, final scores, sprites and masks with their evolution (GIF), curves, reconstructions
and segmentations: every picture is embedded as a base64 data URI, so the single file can be
mailed or archived. Written by the trainer at the end of a run and by
`python -m dti_sprites report --run RUN_DIR` for any run folder (what is missing is listed,
not fatal).
"""

import base64
import datetime
import html
import json
from pathlib import Path

REPORT_NAME = "report.html"
MAX_EMBED_BYTES = 8 * 2**20  # a larger file is linked, not embedded
HEADLINE_EXCLUDE = ("iou_",)  # per-class scores go to their own table
OPTIONAL = {"images/backgrounds.png", "images/backgrounds.gif"}  # models without a background have none

# (section title, [(file under the run folder, caption)])
SECTIONS = [
    ("Sprites", [
        ("images/masked_sprites.png", "sprites × masks"),
        ("images/masked_sprites.gif", "evolution during training"),
        ("images/sprites.png", "appearances"),
        ("images/sprites.gif", "appearances during training"),
        ("images/masks.png", "masks"),
        ("images/masks.gif", "masks during training"),
        ("images/backgrounds.png", "backgrounds"),
        ("images/backgrounds.gif", "backgrounds during training"),
    ]),
    ("Curves", [
        ("plots/loss.png", "loss"),
        ("plots/proportions.png", "share of each sprite"),
        ("plots/scores.png", "validation scores"),
    ]),
    ("Decompositions", [
        ("images/segmentation_instances.png", "input | reconstruction | instances"),
        ("images/segmentation_semantic.png", "input | reconstruction | sprites"),
        ("images/layers_32.png", "input | reconstruction | object layers"),
        ("images/reconstructions_32.png", "input | reconstruction"),
        ("images/transformed_sprites.png", "every sprite as placed for 4 fixed images"),
        ("images/transformed_sprites.gif", "the same during training"),
        ("images/reconstructions.png", "4 fixed images and their reconstructions"),
    ]),
]

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2em; } .meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
td, th { border: 1px solid #ccc; padding: 3px 10px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
figure { display: inline-block; margin: 0 1.2em 1.2em 0; vertical-align: top; }
figure img { image-rendering: pixelated; max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; color: #555; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.missing { color: #a33; font-size: 0.9em; }
"""

MIME = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".svg": "image/svg+xml"}


def _data_uri(path: Path) -> str:
    return f"data:{MIME[path.suffix.lower()]};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _figure(path: Path, caption: str, rel: str) -> str:
    if path.stat().st_size > MAX_EMBED_BYTES:
        return f'<figure><a href="{html.escape(rel)}">{html.escape(rel)}</a><figcaption>{html.escape(caption)} ' \
               f'(too large to embed)</figcaption></figure>'
    # Small pictures are shown at twice their size; pixelated rendering keeps them sharp.
    width = _png_width(path)
    style = f' style="width:{min(2 * width, 1060)}px"' if width and width < 530 else ""
    return f'<figure><img src="{_data_uri(path)}" alt="{html.escape(rel)}"{style}>' \
           f'<figcaption>{html.escape(caption)}</figcaption></figure>'


def _png_width(path: Path) -> int | None:
    try:
        from PIL import Image

        with Image.open(path) as img:
            return img.width
    except OSError:
        return None


def _scores_tables(scores: dict) -> str:
    headline = {k: v for k, v in scores.items() if not k.startswith(HEADLINE_EXCLUDE)}
    per_class = {k: v for k, v in scores.items() if k.startswith(HEADLINE_EXCLUDE)}
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in headline.items())
    out = f"<table><tr><th>score</th><th>value</th></tr>{rows}</table>"
    if per_class:
        cells = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in per_class.items())
        out += f"<details><summary>per-class scores ({len(per_class)})</summary><table>{cells}</table></details>"
    return out


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else html.escape(str(value))


def _last_lines(path: Path, n: int) -> str:
    if not path.is_file():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:])


def build_report(run_dir: str | Path) -> str:
    """The HTML text of a run's report."""
    run = Path(run_dir)
    title = f"{run.parent.name} / {run.name}"
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f"<p class='meta'>DTI-Sprites run report, written {datetime.datetime.now():%Y-%m-%d %H:%M} "
             f"from {html.escape(str(run.resolve()))}</p>"]
    scores_path = run / "final_scores.json"
    parts.append("<h2>Final scores</h2>")
    if scores_path.is_file():
        parts.append(_scores_tables(json.loads(scores_path.read_text())))
    else:
        parts.append("<p class='missing'>final_scores.json is absent: the run has not finished.</p>")
    missing = []
    for section, entries in SECTIONS:
        figures = []
        for rel, caption in entries:
            path = run / rel
            if path.is_file():
                figures.append(_figure(path, caption, rel))
            elif rel not in OPTIONAL:
                missing.append(rel)
        if figures:
            parts.append(f"<h2>{section}</h2>" + "".join(figures))
    config = run / "config.yml"
    parts.append("<h2>Config</h2>")
    parts.append(f"<pre>{html.escape(config.read_text())}</pre>" if config.is_file()
                 else "<p class='missing'>config.yml is absent.</p>")
    log_tail = _last_lines(run / "train.log", 25)
    if log_tail:
        parts.append(f"<h2>End of train.log</h2><pre>{html.escape(log_tail)}</pre>")
    if missing:
        parts.append("<p class='missing'>Not in this run folder: " + ", ".join(html.escape(m) for m in missing) + "</p>")
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
