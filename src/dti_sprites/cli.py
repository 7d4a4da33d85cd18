"""Command line: `python -m dti_sprites <command>` (also the `dti-sprites` script).

Errors a user can fix are printed as one line naming the cause; `--debug` shows the
traceback instead.
"""

import argparse
import json
import sys
from pathlib import Path

from .config_files import resolve_config
from .errors import ConfigError, DTISpritesError, first_line
from .host_memory import keep_freed_memory


def pick_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DTISpritesError(f"--device {name}: expected cpu, cuda, cuda:N or auto") from None
    if device.type not in ("cpu", "cuda"):
        raise DTISpritesError(f"--device {name}: expected cpu, cuda, cuda:N or auto")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DTISpritesError(f"--device {name}: no CUDA device is available here; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise DTISpritesError(
            f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s), numbered from 0"
        )
    return device


def cmd_train(args) -> None:
    from .config_files import load_config
    from .evaluation import nan_as_null
    from .training.distributed import init_distributed, shutdown_distributed
    from .training.signals import exit_status
    from .training.trainer import Trainer

    overrides = list(args.set or [])
    if args.data_root:
        overrides.append(f"dataset.data_root={args.data_root}")
    if args.time_budget:
        overrides.append(f"training.time_budget={args.time_budget}")
    cfg = load_config(resolve_config(args.config), overrides)
    device = pick_device(args.device)  # a bad name fails here, before torchrun's process group
    ctx, device_name = init_distributed(args.device)
    trainer = scores = None
    try:
        trainer = Trainer(
            cfg,
            pick_device(device_name) if ctx.enabled else device,
            args.runs_root,
            args.tag,
            progress=not args.no_progress,
            dist_ctx=ctx,
        )
        if ctx.is_main:
            print(f"run folder: {trainer.run_dir}", file=sys.stderr)
        scores = trainer.run()
    finally:
        shutdown_distributed()
        if trainer is not None and ctx.is_main:  # also after a failure: scripts learn where the partial run is
            result = {"run_folder": str(trainer.run_dir), "scores": None if scores is None else nan_as_null(scores)}
            print(json.dumps(result, allow_nan=False))
    if scores is None and ctx.is_main:
        print(
            f"stopped before the end; checkpoint saved. Continue with: --set training.resume={trainer.run_dir}",
            file=sys.stderr,
        )
    if trainer.stop_signal is not None:  # saved, but not finished: exit as the signal would have
        sys.exit(exit_status(trainer.stop_signal))


# What the eval split of each benchmark kind holds (docs/method.md §3), for the line `evaluate` prints.
EVAL_SPLITS = {"multi_object": "the first 320 images, or all when fewer"}


def cmd_evaluate(args) -> None:
    from .config import validate
    from .data import DATASETS, build_dataset, dataset_root
    from .errors import CheckpointError
    from .evaluation import evaluate_model, scores_json
    from .training.checkpoint import load_trained_model

    device = pick_device(args.device)
    source = args.checkpoint or args.run
    model, ckpt = load_trained_model(source, device)
    if not isinstance(ckpt.get("config"), dict):
        raise CheckpointError(f"checkpoint {source} holds no config; expected a model.pkl written by training")
    cfg = validate(ckpt["config"])
    entry = DATASETS.get(cfg["dataset"]["name"])
    if args.data:
        if not entry.reads_folder:
            raise DTISpritesError(
                f"--data {args.data}: this run's dataset {entry.name!r} ships with a library, "
                "so there is no folder to replace; evaluate without --data"
            )
        cfg["dataset"]["path"] = args.data
        cfg["dataset"]["img_size"] = list(model.img_size)  # other folders' images are resized to the model's size
    dataset, entry = build_dataset(cfg, "eval")
    train_cfg = cfg["training"]
    scores = evaluate_model(
        entry.kind,
        model,
        dataset,
        device,
        batch_size=args.batch_size,
        eval_semantic=train_cfg["eval_semantic"],
        eval_with_bkg=train_cfg["eval_with_bkg"],
        n_classes=entry.n_classes,
        progress=not args.no_progress,
    )
    where = dataset_root(cfg) if entry.reads_folder else f"{entry.name} (bundled)"
    print(
        f"scored {len(dataset)} images of {where} (eval split: {EVAL_SPLITS.get(entry.kind, 'every image')})",
        file=sys.stderr,
    )
    print(scores_json(scores))


def _generators() -> dict:
    """Synthetic stand-ins: name -> (generator(out, n, seed, progress), size of the real set)."""
    from .data.dsprites import generate_dsprites
    from .data.tetrominoes import generate_tetrominoes

    return {"tetrominoes": (generate_tetrominoes, 60000), "dsprites_gray": (generate_dsprites, 60000)}


def cmd_make_data(args) -> None:
    generate, real_size = _generators()[args.name]
    n = args.n or real_size
    out = Path(args.out) if args.out else Path("datasets") / args.name
    options = {}
    if args.objects is not None:
        if args.name != "dsprites_gray" or len(args.objects) > 2:
            raise ConfigError("--objects: dsprites_gray only, one count or MIN MAX (e.g. --objects 10)")
        options["objects"] = (args.objects[0], args.objects[-1])
    path = generate(out, n, args.seed, progress=not args.no_progress, **options)
    print(f"wrote {n} images to {path}", file=sys.stderr)


def cmd_prepare_data(args) -> None:
    """Generate the config's dataset when it is synthetic and absent; otherwise do nothing."""
    from .config_files import load_config
    from .data import dataset_root

    cfg = load_config(resolve_config(args.config))
    name, root = cfg["dataset"]["name"], dataset_root(cfg)
    generators = _generators()
    if name not in generators:
        return
    if root.exists():
        _check_synthetic_size(cfg)
        return
    generate, real_size = generators[name]
    n = cfg["dataset"]["synthetic_size"] or real_size
    objects = cfg["dataset"]["synthetic_objects"]
    print(f"{root} is absent: generating {n} synthetic {name} images there", file=sys.stderr)
    generate(root, n, seed=0, progress=True, **({"objects": tuple(objects)} if objects else {}))


def _check_synthetic_size(cfg: dict) -> None:
    """Refuse a generated folder of another size than the config asks for: training would use it
    without a word (e.g. a folder an earlier version generated with its own default size). The
    count is the training loader's own, so it sees the images training would."""
    from .data import build_dataset, dataset_root

    wanted = cfg["dataset"]["synthetic_size"]
    if wanted is None:
        return
    have = len(build_dataset(cfg, "train")[0])
    if have != wanted:
        raise ConfigError(
            f"{dataset_root(cfg)} holds {have} images, but dataset.synthetic_size asks for {wanted}: delete "
            f"the folder to generate {wanted}, or set dataset.synthetic_size={have} to train on it"
        )


def cmd_resize_images(args) -> None:
    from .data.resize_images import resize_folder

    written, failed = resize_folder(
        args.src, args.out, (args.size, args.size), args.policy, args.format, progress=not args.no_progress
    )
    note = f"; {len(failed)} unreadable file(s) skipped (named above)" if failed else ""
    print(f"wrote {written} images to {args.out}{note}", file=sys.stderr)


def cmd_download(args) -> None:
    from .data.download import download

    if download(args.names, args.data_root):
        sys.exit(1)


def cmd_bench(args) -> None:
    from .bench import benchmark
    from .config_files import load_config

    cfg = load_config(resolve_config(args.config), args.set)
    result = benchmark(cfg, pick_device(args.device), args.phase, args.steps, args.warmup)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


def cmd_decompose(args) -> None:
    from .outputs.decompose import load_run
    from .outputs.decompose_inputs import count_stretched, list_image_files

    files = list_image_files(args.images)  # a wrong --images fails before the model is loaded
    run = load_run(args.run, args.checkpoint, pick_device(args.device))
    (H, W), crop = run.image_size, args.crop
    stretched = count_stretched(files, (H, W)) if crop == "none" else 0
    if stretched:
        print(
            f"warning: {stretched} of {len(files)} images do not have the aspect ratio of the model's {H}x{W} "
            "and are stretched to it; --crop center crops them around their centre instead",
            file=sys.stderr,
        )
    folders = run.decompose_folder(args.images, args.out, args.batch_size, progress=not args.no_progress, crop=crop)
    how = "centre-cropped and resized" if crop == "center" else "resized"
    print(f"decomposed {len(folders)} images into {args.out} ({how} to {H}x{W})", file=sys.stderr)


def cmd_report(args) -> None:
    from .outputs.report import write_report

    if not Path(args.run).is_dir():
        raise DTISpritesError(f"run folder {args.run} not found")
    print(write_report(args.run))


def cmd_summarize(args) -> None:
    from .outputs.summary import summarize, to_markdown, write_summary

    if args.out:
        summary = write_summary(args.runs, args.out, args.title, args.scores_file)
        print(f"wrote {args.out}.tsv and {args.out}.md", file=sys.stderr)
    else:
        summary = summarize(args.runs, args.scores_file)
    print(to_markdown(summary, args.title), end="")


def cmd_curves(args) -> None:
    from .outputs.time_curves import parse_reference, time_curves

    runs = {}
    for item in args.runs:
        label, sep, folder = item.partition("=")
        runs[label if sep else Path(item).name] = Path(folder if sep else item)
    references = dict(parse_reference(text) for text in args.reference)
    print(time_curves(runs, references, args.out, args.metric, args.title))


def cmd_visdom_server(args) -> None:
    from .monitoring.visdom_server import serve

    serve(args.port, args.host, args.env_path)


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
