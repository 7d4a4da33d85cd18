"""The run folder `runs/<dataset>/<MMDD>_<tag>/`: config copy, log file, metric tables.

Nothing in an existing run folder is ever overwritten by a new run: a name already taken
gets a numbered suffix.
"""

import datetime
import logging
import shutil
import sys
from pathlib import Path

from tqdm import tqdm

from ..errors import DTISpritesError

LOGGER_NAME = "dti_sprites"


def new_run_dir(runs_root: str | Path, dataset: str, tag: str) -> Path:
    base = Path(runs_root) / dataset / f"{datetime.date.today():%m%d}_{tag}"
    candidate, n = base, 1
    while candidate.exists():
        candidate = base.with_name(f"{base.name}_{n}")
        n += 1
    try:
        candidate.mkdir(parents=True)
        probe = candidate / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise DTISpritesError(f"run folder {candidate} cannot be written: {err.strerror}") from None
    return candidate


def discard_run_dir(run_dir: Path) -> None:
    """Remove a run folder this process just created, when the run cannot start after all:
    a failed start leaves no half-made run (config.yml and an empty train.log) behind."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == Path(run_dir).resolve():
            logger.removeHandler(handler)
            handler.close()
    shutil.rmtree(run_dir, ignore_errors=True)


class _TqdmHandler(logging.Handler):
    """Console output that does not break a running progress bar."""

    def emit(self, record):
        tqdm.write(self.format(record), file=sys.stderr)


def setup_logger(run_dir: Path | None, quiet: bool = False) -> logging.Logger:
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.INFO)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
    if not quiet:
        console = _TqdmHandler()
        console.setFormatter(fmt)
        logger.addHandler(console)
    if run_dir is not None:
        file_handler = logging.FileHandler(run_dir / "train.log")
        file_handler.setFormatter(fmt)
        logger.addHandler(file_handler)
    logger.propagate = False
    return logger


class MetricsTable:
    """An append-only TSV with a fixed header (appending again after a resume)."""

    def __init__(self, path: Path, columns: list[str]):
        """An existing file keeps its own header (columns may then be left empty)."""
        self.path = path
        if path.exists():
            self.columns = path.read_text().split("\n", 1)[0].split("\t")
        else:
            self.columns = columns
            path.write_text("\t".join(columns) + "\n")

    def truncate_after(self, iteration: int) -> None:
        """Drop rows logged after `iteration`: a resumed run redoes them."""
        lines = self.path.read_text().splitlines(keepends=True)
        kept = lines[:1] + [line for line in lines[1:] if int(float(line.split("\t", 1)[0])) <= iteration]
        if len(kept) != len(lines):
            self.path.write_text("".join(kept))

    def append(self, row: dict) -> None:
        values = [_fmt(row.get(column, "")) for column in self.columns]
        with open(self.path, "a") as handle:
            handle.write("\t".join(values) + "\n")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_scores(path: Path, scores: dict) -> None:
    """Final scores as a two-column TSV (name, value)."""
    path.write_text("".join(f"{k}\t{_fmt(v)}\n" for k, v in scores.items()))
