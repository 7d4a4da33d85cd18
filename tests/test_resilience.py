"""Never lose a run: SIGKILL then resume is bit-exact, torchrun matches one process,
and hostile input stops with one line naming the cause."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from dti_sprites.errors import DTISpritesError
from dti_sprites.training.checkpoint import BEST_CHECKPOINT_NAME, load_checkpoint
from dti_sprites.training.trainer import Trainer

from conftest import assert_same_state, small_config

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # same threads in every process: same float sums


def _write_config(path: Path, tetro_dir, model=None, **training) -> Path:
    cfg = small_config(model=model, training=training, dataset={"path": str(tetro_dir)})
    path.write_text(yaml.safe_dump(cfg))
    return path


def _train_cmd(config: Path, runs: Path, *extra) -> list[str]:
    return [
        sys.executable,
        "-m",
        "dti_sprites",
        "train",
        "--config",
        str(config),
        "--device",
        "cpu",
        "--runs-root",
        str(runs),
        "--no-progress",
        *extra,
    ]


def _final_state(runs: Path) -> dict:
    (run,) = list(runs.glob("*/*/model.pkl"))
    return load_checkpoint(run)["model_state"]


def test_sigkill_then_resume_is_bit_exact(tetro_dir, tmp_path):
    config = _write_config(
        tmp_path / "c.yml",
        tetro_dir,
        n_iterations=24,  # killed 3-9 rows in: room enough that the run cannot finish between two polls
        train_stat_interval=1,
        val_stat_interval=2,
        check_cluster_interval=3,
    )
    subprocess.run(_train_cmd(config, tmp_path / "straight"), env=ENV, check=True, capture_output=True)

    proc = subprocess.Popen(
        _train_cmd(config, tmp_path / "crash"), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    kill_at = random.Random().randint(3, 9)
    deadline = time.time() + 180
    metrics = None
    while time.time() < deadline and proc.poll() is None:
        found = list((tmp_path / "crash").glob("*/*/train_metrics.tsv"))
        if found and len(found[0].read_text().splitlines()) > kill_at:
            metrics = found[0]
            break
        time.sleep(0.05)
    assert metrics is not None, "training did not get far enough to be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    run_dir = metrics.parent
    assert load_checkpoint(run_dir)["iteration"] < 24
    subprocess.run(
        _train_cmd(config, tmp_path / "crash", "--set", f"training.resume={run_dir}"),
        env=ENV,
        check=True,
        capture_output=True,
    )
    straight, resumed = _final_state(tmp_path / "straight"), _final_state(tmp_path / "crash")
    assert_same_state(straight, resumed)
    iterations = [int(line.split("\t")[0]) for line in metrics.read_text().splitlines()[1:]]
    assert iterations == list(range(1, 25))  # rows logged after the checkpoint were redone, not duplicated
    assert (run_dir / BEST_CHECKPOINT_NAME).is_file()


def test_torchrun_two_processes_match_one(tetro_dir, tmp_path):
    # resnet20 has no conv bias in front of its batch norms: such a bias gets a zero gradient, and Adam turns
    # float noise in it into full-size random steps that differ between any two runs.
    config = _write_config(
        tmp_path / "c.yml",
        tetro_dir,
        model={"encoder_name": "resnet20"},
        n_iterations=4,
        batch_size=8,
        val_stat_interval=100,
        check_cluster_interval=2,
    )
    subprocess.run(_train_cmd(config, tmp_path / "one"), env=ENV, check=True, capture_output=True)
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [
        str(torchrun),
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "dti_sprites",
        "train",
        "--config",
        str(config),
        "--device",
        "cpu",
        "--runs-root",
        str(tmp_path / "two"),
        "--no-progress",
    ]
    result = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(list((tmp_path / "two").glob("*/*"))) == 1  # rank 0 alone wrote a run folder
    one, two = _final_state(tmp_path / "one"), _final_state(tmp_path / "two")
    diffs = torch.cat(
        [
            (one[k].double() - two[k].double()).abs().flatten()
            for k in one
            if torch.is_tensor(one[k]) and one[k].is_floating_point()
        ]
    )
    # Adam's first steps move each weight by about ±lr whatever the gradient's size, so the few
    # gradients that float rounding pushes across zero differ by ~lr; the bulk agrees closely.
    assert diffs.median() < 1e-6 and diffs.mean() < 1e-4, (diffs.median(), diffs.mean(), diffs.max())


def _gradient_worker(rank, world, init_file, cfg, images, out_path):
    import torch.distributed as dist

    from dti_sprites.model.sprites_model import DTISprites
    from dti_sprites.training.distributed import all_reduce_gradients, use_global_batchnorm

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = use_global_batchnorm(DTISprites(cfg["model"], (35, 35), 3))
    torch.manual_seed(1)  # the same noise draw as the single process
    n = images.shape[0] // world
    model(images[rank * n : (rank + 1) * n]).loss.mean().backward()
    all_reduce_gradients(model.parameters(), world)
    if rank == 0:
        torch.save({name: p.grad for name, p in model.named_parameters() if p.grad is not None}, out_path)
    dist.destroy_process_group()


def test_sharded_gradients_equal_the_full_batch_gradient(tmp_path):
    """The DDP step computes the single-process gradient: global batch norm (encoder and
    heads), averaged shards."""
    import torch.multiprocessing as mp

    from dti_sprites.model.sprites_model import DTISprites

    cfg = small_config(
        model={
            "encoder_name": "resnet20",
            "n_objects": 3,
            "pred_occlusion": True,
            "add_empty_sprite": True,
            "lambda_empty_sprite": 1e-4,
            "norm_layer": "bn",
        }
    )
    images = torch.rand(8, 3, 35, 35)
    mp.spawn(_gradient_worker, args=(2, str(tmp_path / "init"), cfg, images, str(tmp_path / "grads.pt")), nprocs=2)
    sharded = torch.load(tmp_path / "grads.pt")
    torch.manual_seed(0)
    model = DTISprites(cfg["model"], (35, 35), 3)
    torch.manual_seed(1)
    model(images).loss.mean().backward()
    full = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert full.keys() == sharded.keys()
    for name, grad in full.items():
        assert torch.allclose(grad, sharded[name], rtol=1e-3, atol=1e-7), name


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tetro_dir, tmp_path):
    cfg = small_config(
        training={"n_iterations": 10, "train_stat_interval": 1, "val_stat_interval": 2},
        dataset={"path": str(tetro_dir)},
    )
    trainer = Trainer(cfg, "cpu", tmp_path, progress=False, quiet=True)
    assert trainer.run(max_iterations=2) is None
    with torch.no_grad():
        trainer.model.prototypes.fill_(float("nan"))
    with pytest.raises(DTISpritesError, match="loss became nan at iteration 3"):
        trainer.run()
    assert load_checkpoint(trainer.run_dir)["iteration"] == 2


def _cli_error(args, cwd=None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "dti_sprites", *args], capture_output=True, text=True, env=ENV, cwd=cwd
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_corrupt_image_is_named(tetro_dir, tmp_path):
    import shutil

    data = tmp_path / "tetro"
    shutil.copytree(tetro_dir, data)
    (data / "images" / "7.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    config = _write_config(tmp_path / "c.yml", data)
    line = _cli_error(
        ["train", "--config", str(config), "--device", "cpu", "--runs-root", str(tmp_path / "r"), "--no-progress"]
    )
    assert "7.png" in line


def test_unwritable_run_folder(tetro_dir, tmp_path):
    """Root (as CI runs) writes even in a read-only folder, so a runs root under a regular file
    is checked for every user, and a read-only one too where the user is not root."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    roots = [blocker / "runs"]
    if os.geteuid() != 0:
        roots.append(tmp_path / "read_only")
        roots[-1].mkdir()
        roots[-1].chmod(0o500)
    config = _write_config(tmp_path / "c.yml", tetro_dir)
    for runs in roots:
        line = _cli_error(["train", "--config", str(config), "--device", "cpu", "--runs-root", str(runs)])
        assert "cannot be written" in line and str(runs) in line, line


def test_unwritable_run_folder_as_a_file(tetro_dir, tmp_path):
    runs = tmp_path / "runs"
    runs.write_text("not a folder")
    line = _cli_error(
        [
            "train",
            "--config",
            str(_write_config(tmp_path / "c.yml", tetro_dir)),
            "--device",
            "cpu",
            "--runs-root",
            str(runs),
        ]
    )
    assert "cannot be written" in line and str(runs) in line


def test_resume_auto_picks_the_latest_run(tetro_dir, tmp_path):
    cfg = small_config(training={"n_iterations": 6}, dataset={"path": str(tetro_dir)})
    first = Trainer(cfg, "cpu", tmp_path, tag="auto", progress=False, quiet=True)
    first.run(max_iterations=3)
    cfg["training"]["resume"] = "auto"
    again = Trainer(cfg, "cpu", tmp_path, tag="auto", progress=False, quiet=True)
    assert again.run_dir == first.run_dir and again.iteration == 3
    fresh = Trainer(cfg, "cpu", tmp_path, tag="other", progress=False, quiet=True)
    assert fresh.iteration == 0 and fresh.run_dir != first.run_dir


def test_corrupt_images_can_be_skipped_with_a_count(tetro_dir, tmp_path):
    import shutil

    data = tmp_path / "tetro"
    shutil.copytree(tetro_dir, data)
    (data / "images" / "7.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (data / "masks" / "9.png").write_bytes(b"truncated")
    cfg = small_config(training={"n_iterations": 2}, dataset={"path": str(data), "skip_corrupt": True})
    trainer = Trainer(cfg, "cpu", tmp_path / "runs", progress=False)
    assert len(trainer.train_set) == 118
    assert {p.name for p in trainer.train_set.skipped} == {"7.png", "9.png"}
    assert "skipped 2 unreadable file(s)" in (trainer.run_dir / "train.log").read_text()
    assert trainer.run() is not None


def test_checkpoint_carrying_code_is_refused_in_one_line(tmp_path):
    import pickle

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    evil = tmp_path / "model.pkl"
    torch.save({"model_state": Exploit()}, evil, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    line = _cli_error(["evaluate", "--checkpoint", str(evil), "--device", "cpu"])
    assert "refused" in line and not (tmp_path / "ran").exists()


def test_missing_dataset_in_one_line(tmp_path):
    config = tmp_path / "c.yml"
    config.write_text(yaml.safe_dump(small_config(dataset={"data_root": str(tmp_path / "nowhere")})))
    line = _cli_error(["train", "--config", str(config), "--device", "cpu", "--runs-root", str(tmp_path / "runs")])
    assert "not found" in line and "make-data tetrominoes" in line


def _main_error(args, capsys, status: int = 2) -> str:
    """Run the CLI in this process; it must exit with `status` after one line on stderr."""
    from dti_sprites.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == status, err
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def _run_folders(runs: Path) -> list[Path]:
    return [p for p in runs.glob("*/*") if p.is_dir()]


def test_too_many_sprites_are_refused_before_anything_is_allocated(tetro_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("dti_sprites.training.memory.free_memory", lambda device: 8 * 2**30)
    config = _write_config(tmp_path / "c.yml", tetro_dir, model={"transformation_sequence": "identity"})
    runs = tmp_path / "runs"
    line = _main_error(
        [
            "train",
            "--config",
            str(config),
            "--device",
            "cpu",
            "--runs-root",
            str(runs),
            "--set",
            "model.n_sprites=100000",
        ],
        capsys,
    )
    assert "model.n_sprites=100000" in line and "training.batch_size=8" in line, line
    assert "8.0 GiB of RAM is free" in line and not _run_folders(runs)


def test_memory_estimate_counts_the_real_parameters_and_one_rendering():
    from dti_sprites.model.sprites_model import DTISprites
    from dti_sprites.training.memory import RENDER_COPIES, estimate_training_memory

    cfg = small_config()
    model = DTISprites(cfg["model"], (35, 35), 3)
    need = estimate_training_memory(cfg["model"], (35, 35), 3, batch_size=8)
    assert need.parameters == 4 * 4 * sum(p.numel() for p in model.parameters())  # weight, grad, Adam's 2
    assert need.rendering == RENDER_COPIES * 4 * model.L * model.n_candidates * 8 * (3 + 2) * 35 * 35


@pytest.mark.parametrize(
    "damage, needle",
    [
        ("no masks folder", "masks not found"),
        ("mask of the wrong size", "5.png is 20x20"),
        ("unknown encoder", "unknown encoder 'nope'"),
    ],
)
def test_a_run_that_cannot_start_leaves_no_run_folder(tetro_dir, tmp_path, damage, needle):
    import shutil

    from PIL import Image

    data = tmp_path / "tetro"
    shutil.copytree(tetro_dir, data)
    model = {"encoder_name": "nope"} if damage == "unknown encoder" else None
    if damage == "no masks folder":
        shutil.rmtree(data / "masks")
    elif damage == "mask of the wrong size":
        Image.new("L", (20, 20)).save(data / "masks" / "5.png")
    runs = tmp_path / "runs"
    with pytest.raises(DTISpritesError, match=needle):
        Trainer(small_config(model=model, dataset={"path": str(data)}), "cpu", runs, progress=False, quiet=True)
    assert not _run_folders(runs)


def test_bad_device_and_empty_checkpoint_in_one_line(tmp_path, capsys):
    assert "--device gpu: expected cpu, cuda, cuda:N or auto" in _main_error(
        ["evaluate", "--checkpoint", str(tmp_path / "model.pkl"), "--device", "gpu"], capsys
    )
    empty = tmp_path / "model.pkl"
    empty.write_bytes(b"")
    line = _main_error(["evaluate", "--checkpoint", str(empty), "--device", "cpu"], capsys)
    assert str(empty) in line and "empty (0 bytes)" in line


@pytest.mark.parametrize(
    "raised, needle",
    [
        (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9 bytes"), "out of memory"),
        (KeyError(), "error: unexpected KeyError; rerun with --debug"),
        (ValueError("first\nsecond"), "unexpected ValueError: first; rerun with --debug"),
    ],
)
def test_unexpected_failures_are_one_line_without_debug(raised, needle, tmp_path, capsys, monkeypatch):
    def fail(args):
        raise raised

    monkeypatch.setattr("dti_sprites.cli.cmd_report", fail)
    assert needle in _main_error(["report", "--run", str(tmp_path)], capsys, status=1)
    from dti_sprites.cli import main

    with pytest.raises(type(raised)):
        main(["--debug", "report", "--run", str(tmp_path)])
