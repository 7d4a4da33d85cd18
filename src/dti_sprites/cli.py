"""Command line: `python -m dti_sprites <command>` (also the `dti-sprites` script).

Errors a user can fix are printed as one line naming the cause; `--debug` shows the
traceback instead.
"""

import argparse
import sys

from .commands import (
    cmd_bench,
    cmd_curves,
    cmd_decompose,
    cmd_download,
    cmd_evaluate,
    cmd_make_data,
    cmd_prepare_data,
    cmd_report,
    cmd_resize_images,
    cmd_summarize,
    cmd_train,
    cmd_visdom_server,
)
from .errors import DTISpritesError, first_line
from .host_memory import keep_freed_memory


def _parent(flag: str, **kwargs) -> argparse.ArgumentParser:
    """A parent parser (argparse's `parents=`) holding one flag that several commands take, so
    the flag is declared once and reads the same everywhere."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(flag, **kwargs)
    return parent


def _trained_model_parent() -> argparse.ArgumentParser:
    """--run or --checkpoint, exactly one: the trained model a command uses."""
    parent = argparse.ArgumentParser(add_help=False)
    source = parent.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="run folder holding model.pkl")
    source.add_argument("--checkpoint", help="a checkpoint file instead of a run folder (e.g. model_best.pkl)")
    return parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dti-sprites", description="DTI-Sprites: layered decomposition of images into learned sprites."
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks; use when reporting a bug")
    sub = parser.add_subparsers(dest="command", required=True)
    device = _parent(
        "--device", default="auto", help="cpu, cuda, cuda:N, or auto (a GPU when present); name one to pick among GPUs"
    )
    progress = _parent("--no-progress", action="store_true", help="no progress bar (for logs of batch jobs)")
    batch = _parent(
        "--batch-size", type=int, default=32, help="images per forward pass (default 32); lower it if memory runs out"
    )
    overrides = _parent(
        "--set",
        action="append",
        metavar="SECTION.KEY=VALUE",
        help="override a config value, e.g. training.optimizer.lr=1e-3 (repeatable); setting "
        "training.n_iterations clears the config's training.n_epoches, and the reverse",
    )
    trained = _trained_model_parent()

    train = sub.add_parser(
        "train",
        parents=[device, overrides, progress],
        help="train a model from a YAML config; the last output line is JSON (run folder, final scores)",
    )
    train.add_argument(
        "--config", default="tetro_demo.yml", help="YAML file, or a name in configs/ (tetro.yml reproduces the paper)"
    )
    train.add_argument("--tag", default="default", help="name of the run; the folder is runs/<dataset>/<MMDD>_<tag>")
    train.add_argument("--runs-root", default="runs", help="where run folders are created")
    train.add_argument("--data-root", default=None, help="folder holding the datasets (default: datasets/)")
    train.add_argument(
        "--time-budget",
        type=float,
        default=None,
        help="stop after this many seconds, then evaluate; for time-to-quality runs",
    )
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser(
        "evaluate", parents=[trained, device, batch, progress], help="score a trained run; the last output line is JSON"
    )
    evaluate.add_argument(
        "--data",
        help="dataset folder to score on, in the layout of the run's dataset, "
        "resized to the model's size (default: the run's dataset; refused for digits, "
        "which has no folder)",
    )
    evaluate.set_defaults(func=cmd_evaluate)

    make = sub.add_parser(
        "make-data", parents=[progress], help="generate a synthetic dataset in the on-disk format of the real one"
    )
    make.add_argument("name", choices=["tetrominoes", "dsprites_gray"], help="which dataset to imitate")
    make.add_argument("--out", help="output folder (default: datasets/<name>); must not exist yet")
    make.add_argument("--n", type=int, default=None, help="number of images (default: as many as the real set)")
    make.add_argument("--seed", type=int, default=0, help="same seed, same images")
    make.add_argument(
        "--objects",
        type=int,
        nargs="+",
        metavar="N",
        help="dsprites_gray: sprites per image, one count or MIN MAX (default 2 5; e.g. 10 for dsprites10.yml)",
    )
    make.set_defaults(func=cmd_make_data)

    bench = sub.add_parser(
        "bench", parents=[device, overrides], help="time the full training step of a config on synthetic data"
    )
    bench.add_argument("--config", default="tetro.yml", help="YAML file or a name in configs/")
    bench.add_argument(
        "--phase",
        choices=["early", "late"],
        default="late",
        help="late: sprites unfrozen and curricula done (most of a run); early: the first epoch",
    )
    bench.add_argument("--steps", type=int, default=20, help="timed steps (the median is reported)")
    bench.add_argument("--warmup", type=int, default=3, help="untimed steps first (allocator, autotuning)")
    bench.add_argument("--json", help="also write the result to this file")
    bench.set_defaults(func=cmd_bench)

    prepare = sub.add_parser(
        "prepare-data",
        help="generate a config's synthetic dataset if it is absent (pipeline.sh runs it before training)",
    )
    prepare.add_argument("--config", default="tetro_demo.yml", help="YAML file or a name in configs/")
    prepare.set_defaults(func=cmd_prepare_data)

    fetch = sub.add_parser(
        "download",
        help="fetch the original release's datasets from Google Drive "
        "(download_data.sh runs it); existing dataset folders are skipped",
    )
    from .data.download import add_arguments as add_download_arguments

    add_download_arguments(fetch)
    fetch.set_defaults(func=cmd_download)

    resize = sub.add_parser(
        "resize-images",
        parents=[progress],
        help="turn a folder of images into an "
        "image_folder dataset (square crop + resize; used by process_insta_santa.sh)",
    )
    resize.add_argument("src", help="folder of images, read recursively")
    resize.add_argument("out", help="output folder (created; same relative paths as in src)")
    resize.add_argument("--size", type=int, default=128, help="side of the square output images in pixels")
    resize.add_argument(
        "--policy",
        choices=["center_crop", "resize"],
        default="center_crop",
        help="center_crop keeps the aspect ratio; resize stretches the whole image",
    )
    resize.add_argument(
        "--format",
        choices=["png", "jpg"],
        default="png",
        help="jpg for large collections (smaller files), png to avoid compression loss",
    )
    resize.set_defaults(func=cmd_resize_images)

    decompose = sub.add_parser(
        "decompose",
        parents=[trained, device, batch, progress],
        help="explain new images with a trained run: layers, segmentations and objects.json per image",
    )
    decompose.add_argument(
        "--images",
        required=True,
        help="folder of images (png, jpg, ...); they are resized "
        "to the model's image size, stretched when their aspect ratio differs (see --crop)",
    )
    decompose.add_argument(
        "--crop",
        choices=["none", "center"],
        default="none",
        help="center: first crop each image to the model's aspect ratio around its centre; "
        "none: resize the whole image",
    )
    decompose.add_argument("--out", required=True, help="output folder; one sub-folder per image")
    decompose.set_defaults(func=cmd_decompose)

    report = sub.add_parser(
        "report",
        help="write <run>/report.html: one offline page with scores, sprites, "
        "curves and decompositions (training writes it too)",
    )
    report.add_argument("--run", required=True, help="run folder")
    report.set_defaults(func=cmd_report)

    summarize = sub.add_parser(
        "summarize", help="mean ± std of the final scores of several runs (multi_pipeline.sh calls it); prints Markdown"
    )
    summarize.add_argument("runs", nargs="+", help="run folders (each with final_scores.json)")
    summarize.add_argument("--out", help="also write OUT.tsv and OUT.md")
    summarize.add_argument("--title", default="Final scores", help="heading of the Markdown table")
    summarize.add_argument(
        "--scores-file",
        default="final_scores.json",
        help="which JSON file of each run to read, e.g. heldout_scores.json",
    )
    summarize.set_defaults(func=cmd_summarize)

    curves = sub.add_parser("curves", help="a score against minutes of training for several runs, as one PNG")
    curves.add_argument("runs", nargs="+", help="run folders, or LABEL=FOLDER")
    curves.add_argument("--out", required=True, help="PNG file to write")
    curves.add_argument("--metric", default="ari_fg", help="a column of val_metrics.tsv (default ari_fg)")
    curves.add_argument(
        "--reference",
        action="append",
        default=[],
        help="a curve measured elsewhere, LABEL=MINUTES:SCORE,MINUTES:SCORE,... (repeatable)",
    )
    curves.add_argument("--title", default="", help="figure title")
    curves.set_defaults(func=cmd_curves)

    visdom = sub.add_parser(
        "visdom-server", help="serve visdom's live page (training.visualizer_port), offline: no script is downloaded"
    )
    visdom.add_argument("--port", type=int, default=8097, help="the port that training.visualizer_port names")
    visdom.add_argument(
        "--host", default="localhost", help="address to listen on; 0.0.0.0 opens the page (no login) to other machines"
    )
    visdom.add_argument("--env-path", default=None, help="folder of saved visdom environments (default ~/.visdom/)")
    visdom.set_defaults(func=cmd_visdom_server)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    keep_freed_memory()
    try:
        args.func(args)
    except DTISpritesError as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as err:  # out of memory, or a bug: one line here, the traceback with --debug
        if args.debug:
            raise
        if _out_of_memory(err):
            print(
                f"error: out of memory ({first_line(err)}); lower training.batch_size or model.n_sprites "
                "(--batch-size for evaluate and decompose)",
                file=sys.stderr,
            )
        else:
            detail = f": {first_line(err)}" if str(err).strip() else ""
            print(
                f"error: unexpected {type(err).__name__}{detail}; rerun with --debug for the traceback and report it",
                file=sys.stderr,
            )
        sys.exit(1)


def _out_of_memory(err: Exception) -> bool:
    """Python's MemoryError, torch's CUDA OutOfMemoryError, or its CPU allocator's refusal."""
    text = str(err)
    return (
        isinstance(err, MemoryError)
        or type(err).__name__ == "OutOfMemoryError"
        or "can't allocate memory" in text
        or "out of memory" in text
    )
