"""What each command of the command line does (cli.py parses the arguments and reports errors).

Each command imports what it needs (the trainer, the figures) when it runs, not when the
command line is parsed.
"""

import json
import sys
from pathlib import Path

from .config_files import resolve_config
from .errors import ConfigError, DTISpritesError


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
