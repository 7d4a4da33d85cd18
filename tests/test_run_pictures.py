"""The run's story as a person sees it: run_info.json and the report's header, what the
scores cover, enlarged snapshot PNGs, curves with a legend, a zoomed score axis and the final
evaluation, and a warning when the run is shorter than its logging intervals."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dti_sprites.outputs.class_names import class_names, classes_note
from dti_sprites.palette import sprite_colour
from dti_sprites.training.plots import curve_figures, plot_metrics
from dti_sprites.training.run_info import run_status
from dti_sprites.training.trainer import Trainer

from conftest import small_config


@pytest.fixture(scope="module")
def finished_run(tetro_dir, tmp_path_factory):
    cfg = small_config(
        training={"n_iterations": 4, "train_stat_interval": 2, "val_stat_interval": 2}, dataset={"path": str(tetro_dir)}
    )
    trainer = Trainer(cfg, "cpu", tmp_path_factory.mktemp("runs"), tag="story", progress=False, quiet=True)
    trainer.run()
    return trainer.run_dir


def test_run_info_and_the_report_header_of_a_finished_run(finished_run):
    info = json.loads((finished_run / "run_info.json").read_text())
    assert info["status"] == "finished" and info["iterations"] == 4 and info["planned_iterations"] == 4
    assert info["seed"] == 1 and info["torch"] == torch.__version__ and info["device"] == "cpu"
    assert info["machine"] and info["wall_seconds"] > 0
    assert info["images"] == {"train": 120, "val": 100, "eval": 120}
    text = (finished_run / "report.html").read_text()
    header = text[: text.index("<h2>Final scores")]
    for expected in (
        "class='status finished'",
        "4 of 4 planned (100%)",
        info["machine"],
        "<td>seed</td><td>1</td>",
        f"torch {torch.__version__}",
        "tetrominoes (multi_object)",
    ):
        assert expected in header, expected
    # The scores say what they cover and name the classes; the sprite colours have a legend.
    assert "the first 120 images of the training set" in text and "100 fixed images of the training set" in text
    assert "<td class='name'>I horizontal</td>" in text and "<td class='name'>background</td>" in text
    assert "last validation (iteration 4)" in text
    assert text.count("class='swatch'") == 4 + 1  # 4 sprites and the background


def test_a_run_stopped_by_its_budget_says_so_and_warns_of_missing_curves(tetro_dir, tmp_path):
    cfg = small_config(
        training={"n_iterations": 50, "train_stat_interval": 20, "val_stat_interval": 30, "time_budget": 1e-6},
        dataset={"path": str(tetro_dir)},
    )
    trainer = Trainer(cfg, "cpu", tmp_path, tag="budget", progress=False, quiet=True)
    assert trainer.run() is not None  # a budget ends training: evaluated as at the end
    info = json.loads((trainer.run_dir / "run_info.json").read_text())
    assert info["status"] == "budget" and info["iterations"] == 1 and info["planned_iterations"] == 50
    text = (trainer.run_dir / "report.html").read_text()
    assert "stopped early: time budget reached" in text and "1 of 50 planned (2.0%)" in text
    log = (trainer.run_dir / "train.log").read_text()
    assert "warning: no training curves" in log and "train_stat_interval is 20, longer than the 1 iterations" in log
    assert "warning: no validation curves" in log
    assert "train_stat_interval is 20" in text  # the report repeats the warning beside the curves
    assert (trainer.run_dir / "plots" / "loss.png").is_file()  # the final evaluation still has its point


def test_run_status_names_why_the_loop_ended():
    class Stop:
        def __init__(self, name):
            self.signal_name = name

        def __bool__(self):
            return self.signal_name is not None

    assert run_status(10, 10, Stop(None), None, 5.0) == "finished"
    assert run_status(4, 10, Stop("SIGTERM"), None, 5.0) == "signal"
    assert run_status(4, 10, Stop(None), 3.0, 5.0) == "budget"
    assert run_status(4, 10, Stop(None), None, 5.0) == "paused"  # run(max_iterations=4)


def test_snapshot_pngs_are_enlarged_and_placed_sprites_get_a_row_per_layer(finished_run):
    from dti_sprites.outputs.decompose import load_run

    model = load_run(finished_run).model
    images = finished_run / "images"
    # 8-pixel sprites are enlarged x8 to 64-pixel tiles (grid padding 2); the GIF frames keep 8.
    assert Image.open(images / "sprites.png").size == (2 + 4 * 66, 2 + 66)
    assert Image.open(images / "masks.png").size == (2 + 4 * 66, 2 + 66)
    assert Image.open(images / "sprites.gif").size == (2 + 4 * 10, 2 + 10)
    # 35-pixel images x2; one row per (fixed image, layer), one column per sprite.
    rows, cols = 4 * model.L, model.n_candidates
    assert Image.open(images / "transformed_sprites.png").size == (2 + cols * 72, 2 + rows * 72)


def _fake_curves_run(root: Path, n_sprites: int = 19) -> Path:
    run = root / "run"
    run.mkdir()
    props = [f"prop_{k}" for k in range(n_sprites)]
    lines = ["\t".join(["iteration", "epoch", "loss", *props])]
    for it in (50, 100, 150, 200):
        lines.append("\t".join([str(it), "0", str(0.1 / it), *[str(1 / n_sprites)] * n_sprites]))
    (run / "train_metrics.tsv").write_text("\n".join(lines) + "\n")
    (run / "val_metrics.tsv").write_text(
        "iteration\tepoch\tseconds\tloss\tari\tari_fg\n100\t0\t10\t0.01\t0.72\t0.81\n200\t0\t20\t0.008\t0.75\t0.86\n"
    )
    (run / "final_scores.json").write_text(json.dumps({"loss": 0.007, "ari": 0.74, "ari_fg": 0.89, "iou_3": None}))
    (run / "run_info.json").write_text(
        json.dumps({"iterations": 230, "benchmark": "multi_object", "images": {"train": 1000, "val": 100, "eval": 320}})
    )
    (run / "config.yml").write_text(f"model:\n  n_sprites: {n_sprites}\ntraining:\n  train_stat_interval: 50\n")
    return run


def test_curves_have_a_legend_sprite_colours_a_zoomed_score_axis_and_the_final_point(tmp_path):
    run = _fake_curves_run(tmp_path)
    figures = curve_figures(run)
    ax = figures["proportions"].axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sorted(labels) == sorted(f"sprite {k}" for k in range(19))
    colours = [tuple(np.round(c.get_facecolor()[0][:3], 4)) for c in ax.collections]
    assert len(set(colours)) == 19  # no colour reused (matplotlib's default cycles 10)
    assert colours[7] == tuple(np.round(sprite_colour(7), 4))  # as in the semantic segmentation
    low, high = figures["scores"].axes[0].get_ylim()
    assert 0.55 < low < 0.72 and 0.89 < high <= 1.0  # data in 0.72-0.89, not squashed into 0-1
    finals = [line for line in figures["scores"].axes[0].lines if line.get_marker() == "*"]
    assert sorted(float(line.get_ydata()[0]) for line in finals) == [0.74, 0.89]
    assert all(float(line.get_xdata()[0]) == 230 for line in finals)  # at the last iteration, after the last val
    assert any(line.get_marker() == "*" for line in figures["loss"].axes[0].lines)
    assert {p.name for p in plot_metrics(run)} == {
        f"{n}.{e}" for n in ("loss", "proportions", "scores") for e in ("png", "pdf")
    }


def test_classes_are_named_and_the_background_class_explained():
    names = class_names("tetrominoes", 20)
    assert names[0] == "background" and names[1] == "I horizontal" and names[19] == "L 4"
    assert class_names("dsprites_gray", 4) == ["background", "square", "ellipse", "heart"]
    assert class_names("clevr6", 7)[3] == "class 3"
    note = classes_note(20, 19, False, "multi_object")
    assert "extra class is the background" in note and "19 sprites" in note
    assert "majority vote" in classes_note(10, 10, True, "clustering")  # the empty sprite is an 11th cluster
