"""Mean ± std of the final scores of several runs (one per seed), as TSV and Markdown.

Reads `final_scores.json` of each run folder (or another scores file of theirs, such as the
`heldout_scores.json` that multi_pipeline.sh writes when it scores the runs on other images). The standard deviation is the sample one
(n − 1 in the denominator), as for "mean ± std over 5 runs" in papers; it is 0 for a single
run. A run without final scores (failed, still training) is listed as missing and left out.
`multi_pipeline.sh` calls this through `python -m dti_sprites summarize`.
"""

import json
import math
from pathlib import Path

from ..errors import DTISpritesError


SCORES_FILE = "final_scores.json"


def read_scores(run_dirs: list[str | Path], scores_file: str = SCORES_FILE) -> tuple[dict[str, dict], list[Path]]:
    """run name -> scores for the runs that finished, and the run folders that did not."""
    scores, missing = {}, []
    for run in map(Path, run_dirs):
        path = run / scores_file
        if not path.is_file():
            missing.append(run)
            continue
        try:
            values = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise DTISpritesError(f"{path} is not valid JSON: {err}") from None
        scores[run.name] = {k: float(v) for k, v in values.items() if isinstance(v, (int, float))}
    return scores, missing


def mean_std(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def summarize(run_dirs: list[str | Path], scores_file: str = SCORES_FILE) -> dict:
    """{"runs": [names], "missing": [folders], "scores": {score: {"mean", "std", "n", "values"}}}.

    A score every run reports is summarised over all of them; a score some runs lack is
    summarised over those that have it (its n says how many).
    """
    per_run, missing = read_scores(run_dirs, scores_file)
    if not per_run:
        raise DTISpritesError(
            "no run to summarise: none of " + ", ".join(str(p) for p in map(Path, run_dirs)) + f" holds {scores_file}"
        )
    names = list(per_run)
    keys = list(dict.fromkeys(k for scores in per_run.values() for k in scores))
    table = {}
    for key in keys:
        values = [per_run[name][key] for name in names if key in per_run[name]]
        mean, std = mean_std(values)
        table[key] = {"mean": mean, "std": std, "n": len(values), "values": [per_run[name].get(key) for name in names]}
    return {"runs": names, "missing": [str(p) for p in missing], "scores": table}


def to_tsv(summary: dict) -> str:
    names = summary["runs"]
    lines = ["\t".join(["score", "mean", "std", "n", *names])]
    for key, row in summary["scores"].items():
        values = ["" if v is None else f"{v:.6g}" for v in row["values"]]
        lines.append("\t".join([key, f"{row['mean']:.6g}", f"{row['std']:.6g}", str(row["n"]), *values]))
    return "\n".join(lines) + "\n"


def to_markdown(summary: dict, title: str = "Final scores") -> str:
    names = summary["runs"]
    lines = [
        f"## {title}",
        "",
        f"Mean ± sample standard deviation over {len(names)} run(s): {', '.join(names)}.",
        "",
        "| score | mean ± std | n |",
        "|---|---|---|",
    ]
    for key, row in summary["scores"].items():
        lines.append(f"| {key} | {row['mean']:.4f} ± {row['std']:.4f} | {row['n']} |")
    if summary["missing"]:
        lines += ["", "Runs without final scores (left out): " + ", ".join(summary["missing"]) + "."]
    return "\n".join(lines) + "\n"


def write_summary(
    run_dirs: list[str | Path], out_prefix: str | Path, title: str = "Final scores", scores_file: str = SCORES_FILE
) -> dict:
    """Write <out_prefix>.tsv and <out_prefix>.md; return the summary."""
    summary = summarize(run_dirs, scores_file)
    out = Path(out_prefix)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_name(out.name + ".tsv").write_text(to_tsv(summary))
    out.with_name(out.name + ".md").write_text(to_markdown(summary, title))
    return summary
