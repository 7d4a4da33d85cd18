"""What a user sees of a run: final figures, decompositions of new images, the HTML report,
multi-seed summaries. One tiny run (3 iterations) serves the module."""

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dti_sprites.cli import main
from dti_sprites.errors import DTISpritesError
from dti_sprites.evaluation.multi_object import front_layer
from dti_sprites.outputs.decompose import explain, load_run
from dti_sprites.outputs.figures import colorize, decomposition_strip, sprite_sheet
from dti_sprites.outputs.summary import summarize, write_summary
from dti_sprites.palette import label_palette
from dti_sprites.training.trainer import Trainer

from conftest import small_config

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def run_dir(tetro_dir, tmp_path_factory):
    cfg = small_config(training={"n_iterations": 3, "val_stat_interval": 3}, dataset={"path": str(tetro_dir)})
    trainer = Trainer(cfg, "cpu", tmp_path_factory.mktemp("runs"), tag="out", progress=False, quiet=True)
    trainer.run()
    return trainer.run_dir


def _cell(path: Path, row: int, col: int, size: int, pad: int = 2) -> np.ndarray:
    """One cell of a torchvision grid (padding 2) as (size, size, 3) uint8."""
    img = np.asarray(Image.open(path).convert("RGB"))
    y, x = pad + row * (size + pad), pad + col * (size + pad)
    return img[y : y + size, x : x + size]


def _as_saved(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] upscaled x2 and quantised as torchvision's save_image does."""
    x = x.repeat_interleave(2, 1).repeat_interleave(2, 2)
    return (x * 255 + 0.5).clamp(0, 255).byte().permute(1, 2, 0).numpy()


def test_final_figures_show_the_scored_segmentation(run_dir, tetro_dir):
    images = run_dir / "images"
    for name in ("segmentation_instances", "segmentation_semantic", "reconstructions_32", "layers_32"):
        assert (images / f"{name}.png").is_file(), name
    # 35-px images are upscaled x2 (70 px cells); 4 triplets per row, 32 images -> 8 rows.
    seg = Image.open(images / "segmentation_instances.png")
    assert seg.size == (12 * 72 + 2, 8 * 72 + 2)
    assert Image.open(images / "reconstructions_32.png").size == (8 * 72 + 2, 8 * 72 + 2)
    # The segmentation column of image 5 (row 1, triplet 1) is the model's instance labels, coloured.
    run = load_run(run_dir)
    from dti_sprites.data import build_dataset

    image = build_dataset(small_config(dataset={"path": str(tetro_dir)}), "eval")[0][5][0]
    _, inst, sem = explain(run.model, image[None])
    expected = colorize(inst, run.model.L + 1)[0]  # (3, 35, 35)
    assert np.array_equal(_cell(images / "segmentation_instances.png", 1, 5, 70), _as_saved(expected))
    expected_sem = colorize(sem, run.model.n_candidates + 1)[0]
    assert np.array_equal(_cell(images / "segmentation_semantic.png", 1, 5, 70), _as_saved(expected_sem))
    log = (run_dir / "train.log").read_text()
    assert "final figures of 32 images" in log and "report:" in log


def test_report_is_self_contained(run_dir):
    text = (run_dir / "report.html").read_text()
    assert text.count("data:image/png;base64,") >= 8 and "data:image/gif;base64," in text
    assert 'src="images/' not in text and "src='images/" not in text  # nothing read from disk when viewed
    scores = json.loads((run_dir / "final_scores.json").read_text())
    assert f"{scores['ari']:.4f}" in text and "n_sprites" in text  # scores table and config
    (run_dir / "report.html").unlink()
    main(["report", "--run", str(run_dir)])
    assert (run_dir / "report.html").stat().st_size > 10_000


def test_report_of_an_unfinished_run_lists_what_is_missing(tmp_path):
    run = tmp_path / "tetrominoes" / "1126_x"
    run.mkdir(parents=True)
    (run / "config.yml").write_text("model: {}\n")
    main(["report", "--run", str(run)])
    text = (run / "report.html").read_text()
    assert "has not finished" in text and "images/masked_sprites.png" in text
    assert "status unknown" in text and "run_info.json is absent" in text
    assert "images/backgrounds.png" not in text  # optional: models without background have none
    with pytest.raises(SystemExit):
        main(["report", "--run", str(tmp_path / "absent")])


def test_decompose_command_writes_layers_labels_and_objects(run_dir, tetro_dir, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        shutil.copy(tetro_dir / "images" / f"{i}.png", src / f"img{i}.png")
    big = Image.open(tetro_dir / "images" / "3.png").resize((60, 50))
    big.save(src / "bigger.jpg", quality=95)
    (src / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    main(
        [
            "decompose",
            "--run",
            str(run_dir),
            "--images",
            str(src),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--batch-size",
            "3",
            "--no-progress",
        ]
    )
    assert sorted(p.name for p in out.iterdir()) == ["bigger", "img0", "img1", "img2"]
    run = load_run(run_dir)
    L, K = run.model.L, run.model.K
    for folder in out.iterdir():
        names = {p.name for p in folder.iterdir()}
        assert names == {
            "input.png",
            "recon.png",
            "background.png",
            "instances.png",
            "semantic.png",
            "instances_color.png",
            "semantic_color.png",
            "objects.json",
        } | {f"layer_{l}.png" for l in range(1, L + 1)}
        assert Image.open(folder / "layer_1.png").mode == "RGBA"
        inst = np.asarray(Image.open(folder / "instances.png"))
        sem = np.asarray(Image.open(folder / "semantic.png"))
        assert inst.dtype == np.uint8 and inst.shape == (35, 35) and inst.max() <= L
        objects = json.loads((folder / "objects.json").read_text())
        assert objects["model_size"] == [35, 35] and "conventions" in objects
        assert objects["resized"] == (folder.name == "bigger")
        assert objects["original_size"] == ([50, 60] if folder.name == "bigger" else [35, 35])
        assert sorted(layer["occlusion_rank"] for layer in objects["layers"]) == list(range(L))
        for layer in objects["layers"]:
            where = inst == layer["layer"]
            assert layer["visible_pixels"] == int(where.sum())
            assert np.all(sem[where] == layer["sprite"] + 1)  # semantic = sprite + 1 of that layer
            assert 0 <= layer["sprite"] <= K
            kinds = [(t["stage"], t["module"]) for t in layer["transformations"]]
            assert kinds == [("sprite", "color"), ("sprite", "affine"), ("layer", "color"), ("layer", "position")]
        assert np.all(sem[inst == 0] == 0)
        # The raw label maps look black in a viewer; their previews carry the report's colours.
        for name, labels, n in (("instances", inst, L + 1), ("semantic", sem, K + 2)):
            preview = np.asarray(Image.open(folder / f"{name}_color.png"))
            assert preview.shape == (35, 35, 3)
            palette = (label_palette(n).numpy() * 255).round().astype(np.uint8)
            assert np.array_equal(preview, palette[labels]), name
            assert len(np.unique(preview.reshape(-1, 3), axis=0)) == len(np.unique(labels)) >= 2, name
        assert objects["background"]["transformations"][0]["module"] == "color"
    # The reconstruction error matches a direct forward pass of the resized input.
    direct = run.decompose([src / "img1.png"])[0]
    saved = json.loads((out / "img1" / "objects.json").read_text())
    assert saved["reconstruction_mse"] == pytest.approx(direct.objects["reconstruction_mse"], rel=1e-5)


def test_decompose_api_matches_the_model(run_dir, tetro_dir):
    run = load_run(run_dir)
    from dti_sprites.data import build_dataset

    data, _ = build_dataset(small_config(dataset={"path": str(tetro_dir)}), "eval")
    images = torch.stack([data[i][0] for i in range(5)])
    results = run.decompose(images, batch_size=2)
    assert [r.name for r in results] == ["0", "1", "2", "3", "4"]
    with torch.no_grad():
        out = run.model(images)
    labels = front_layer(out)
    for b, result in enumerate(results):
        assert torch.allclose(result.recon, out.recon[b].clamp(0, 1), atol=1e-5)
        assert torch.equal(result.instances, labels[b])
        assert torch.allclose(
            result.layer_rgba(2)[3], out.masks[2, b, 0].clamp(0, 1), atol=1e-6
        )  # layer 2 = index 2 (bkg 0)
        assert [layer["sprite"] for layer in result.objects["layers"]] == out.sprite_idx[:, b].tolist()
    with pytest.raises(DTISpritesError):
        run.decompose(torch.rand(2, 1, 35, 35))


def test_evaluate_on_another_folder_says_how_many_images_and_writes_strict_json(run_dir, tetro_dir, tmp_path, capsys):
    few = tmp_path / "three"
    for folder in ("images", "masks", "sem_masks"):
        (few / folder).mkdir(parents=True)
        for i in range(3):
            shutil.copy(tetro_dir / folder / f"{i}.png", few / folder / f"{i}.png")
    main(["evaluate", "--run", str(run_dir), "--data", str(few), "--device", "cpu", "--no-progress"])
    out, err = capsys.readouterr()

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    scores = json.loads(out.strip().splitlines()[-1], parse_constant=refuse)
    assert f"scored 3 images of {few}" in err
    assert None in scores.values()  # the IoU of a class absent from 3 images is undefined: null, not NaN
    assert 0 <= scores["ari_fg"] <= 1


def test_evaluate_refuses_data_for_a_dataset_without_a_folder(run_dir, tmp_path, capsys):
    from dti_sprites.training.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(run_dir)
    ckpt["config"]["dataset"]["name"] = "digits"  # refused before the model meets the data
    save_checkpoint(tmp_path / "digits.pkl", ckpt)
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--checkpoint", str(tmp_path / "digits.pkl"), "--data", str(tmp_path), "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and "--data" in err[0] and "'digits'" in err[0], err


def test_decompose_warns_of_stretching_and_crops_on_request(run_dir, tetro_dir, tmp_path, capsys):
    from dti_sprites.outputs.decompose_inputs import center_crop

    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(tetro_dir / "images" / "0.png", src / "square.png")
    Image.open(tetro_dir / "images" / "1.png").resize((70, 35)).save(src / "wide.png")
    with pytest.raises(SystemExit) as exit_info:
        main(["decompose", "--run", str(run_dir), "--images", str(src / "square.png"), "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2 and "is a file, not a folder" in capsys.readouterr().err

    common = ["decompose", "--run", str(run_dir), "--images", str(src), "--device", "cpu", "--no-progress"]
    main([*common, "--out", str(tmp_path / "stretched")])
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning")]
    assert len(warnings) == 1 and "1 of 2 images" in warnings[0] and "--crop center" in warnings[0]
    main([*common, "--out", str(tmp_path / "cropped"), "--crop", "center"])
    assert "warning" not in capsys.readouterr().err
    objects = json.loads((tmp_path / "cropped" / "wide" / "objects.json").read_text())
    assert objects["crop"] == "center" and objects["original_size"] == [35, 70]
    cropped = np.asarray(Image.open(tmp_path / "cropped" / "wide" / "input.png"))
    wide = np.asarray(Image.open(src / "wide.png").convert("RGB"))
    assert np.array_equal(cropped, wide[:, 17:52])  # the centred 35x35 window, no resampling needed
    assert center_crop(torch.zeros(3, 50, 60), (35, 35)).shape == (3, 50, 50)


def test_placement_follows_the_rendered_sprite(run_dir):
    """Force known head outputs: the reported centre, size and box must match the pixels."""
    run = load_run(run_dir)
    model = run.model
    with torch.no_grad():
        for t in model.transformers():
            for bank in t.heads:
                if bank is not None:
                    bank.last_weight.zero_()
                    bank.last_bias.zero_()
        model.masks.fill_(1.0)  # every sprite a full 8x8 square
        # Layer position head: s = 0 (half the canvas), tx = 0.5, ty = -0.3.
        position = model.layer_transformer.heads[model.layer_transformer.names.index("position")]
        position.last_bias[:] = torch.tensor([0.0, 0.5, -0.3])
    result = run.decompose(torch.rand(1, 3, 35, 35))[0]
    # Sprite spans 35/2 = 17.5 px; its centre moves by -t/2 * 17.5 px from the image centre.
    expected_centre = [17.5 - 0.25 * 17.5, 17.5 + 0.15 * 17.5]
    for layer in result.objects["layers"]:
        placement = layer["placement"]
        assert placement["center_px"] == pytest.approx(expected_centre, abs=1e-3)
        assert placement["scale"] == pytest.approx(17.5 / 8, rel=1e-4)
        assert placement["size_px"] == pytest.approx([17.5, 17.5], rel=1e-4)
        assert placement["rotation_deg"] == pytest.approx(0, abs=1e-6)
        mask = result.layer_masks[layer["layer"] - 1, 0]  # (H, W)
        ys, xs = torch.meshgrid(torch.arange(35) + 0.5, torch.arange(35) + 0.5, indexing="ij")
        centroid = [float((mask * xs).sum() / mask.sum()), float((mask * ys).sum() / mask.sum())]
        assert centroid == pytest.approx(expected_centre, abs=0.3)
        x0, y0, x1, y1 = placement["bbox_px"]
        assert x1 - x0 == pytest.approx(17.5, abs=1.5) and y1 - y0 == pytest.approx(17.5, abs=1.5)
        module = [t for t in layer["transformations"] if t["module"] == "position"][0]
        assert module["extent"] == pytest.approx(0.5) and module["offset_px"] == pytest.approx([-4.375, 2.625])


def test_readme_pictures(run_dir, tmp_path):
    run = load_run(run_dir)
    sheet = Image.open(sprite_sheet(run.model, tmp_path / "sprites.png", cell=48))
    assert sheet.width > 4 * 48  # 4 sprites and the background side by side
    results = run.decompose(torch.rand(2, 3, 35, 35))
    strip = Image.open(decomposition_strip(results, tmp_path / "strip.png", cell=40))
    # input, recon, background, 2 layers, instances, semantic per row; 2 rows.
    assert strip.width == 6 + 7 * 46 and strip.height == 6 + 2 * (40 + 16 + 6)


def _fake_run(root: Path, name: str, scores: dict | None) -> Path:
    run = root / name
    run.mkdir(parents=True)
    if scores is not None:
        (run / "final_scores.json").write_text(json.dumps(scores))
    return run


def test_summary_mean_and_sample_std(tmp_path, capsys):
    runs = [
        _fake_run(tmp_path, f"1126_t_seed{k}", {"ari": v, "mean_iou": 0.5, "iou_3": 0.1 * k})
        for k, v in enumerate([0.8, 0.9, 1.0])
    ]
    runs.append(_fake_run(tmp_path, "1126_t_seed3", None))  # failed run
    summary = summarize(runs)
    assert summary["runs"] == ["1126_t_seed0", "1126_t_seed1", "1126_t_seed2"]
    assert summary["missing"] == [str(runs[3])]
    assert summary["scores"]["ari"]["mean"] == pytest.approx(0.9)
    assert summary["scores"]["ari"]["std"] == pytest.approx(0.1)  # sample std (n - 1)
    assert summary["scores"]["mean_iou"]["std"] == 0
    main(["summarize", *map(str, runs), "--out", str(tmp_path / "sum" / "summary")])
    tsv = (tmp_path / "sum" / "summary.tsv").read_text().splitlines()
    assert tsv[0].split("\t") == ["score", "mean", "std", "n", "1126_t_seed0", "1126_t_seed1", "1126_t_seed2"]
    assert tsv[1].split("\t")[:4] == ["ari", "0.9", "0.1", "3"]
    md = (tmp_path / "sum" / "summary.md").read_text()
    assert "| ari | 0.9000 ± 0.1000 | 3 |" in md and "1126_t_seed3" in md
    assert "| ari | 0.9000 ± 0.1000 | 3 |" in capsys.readouterr().out
    with pytest.raises(DTISpritesError, match="no run to summarise"):
        write_summary([runs[3]], tmp_path / "x")


def test_summary_of_another_scores_file(tmp_path):
    """multi_pipeline.sh's held-out scores: each run's heldout_scores.json, not its final scores."""
    a = _fake_run(tmp_path, "a", {"ari_fg": 0.5})
    b = _fake_run(tmp_path, "b", {"ari_fg": 0.5})
    (a / "heldout_scores.json").write_text(json.dumps({"ari_fg": 0.8}))
    summary = summarize([a, b], scores_file="heldout_scores.json")
    assert summary["scores"]["ari_fg"]["values"] == [0.8] and summary["missing"] == [str(b)]
    main(["summarize", str(a), "--scores-file", "heldout_scores.json", "--out", str(tmp_path / "h")])
    assert "| ari_fg | 0.8000 ± 0.0000 | 1 |" in (tmp_path / "h.md").read_text()


def test_summary_of_one_run_and_of_uneven_scores(tmp_path):
    a = _fake_run(tmp_path, "a", {"ari": 0.7, "nmi": 0.2})
    b = _fake_run(tmp_path, "b", {"ari": 0.9})
    summary = summarize([a, b])
    assert summary["scores"]["nmi"] == {"mean": 0.2, "std": 0.0, "n": 1, "values": [0.2, None]}
    assert summarize([a])["scores"]["ari"]["std"] == 0.0


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_report_renders_in_headless_chromium(run_dir, tmp_path):
    shot = tmp_path / "report.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={profile}",
                f"--screenshot={shot}",
                "--window-size=1200,2000",
                (run_dir / "report.html").resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (2000, 1200)
    assert pixels.std() > 20  # text, tables and pictures, not a blank page
    assert (pixels < 128).mean() > 0.01  # enough dark content (text, black tetromino backgrounds)
    # The header's status badge is drawn: a block of its green near the top of the page.
    rgb = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)[:400]
    badge = (np.abs(rgb - np.array([0x2A, 0x7D, 0x3A])).sum(-1) < 12).sum()
    assert badge > 500, badge


def test_decompose_describes_a_layer_that_shows_the_empty_sprite():
    """The empty sprite gets β = 0 in float64 like every other row: a float32 zero row once made
    the matrix inverse of a spatial sprite module fail on the dtype mix."""
    from dti_sprites.model.sprites_model import DTISprites
    from dti_sprites.outputs.decompose import TrainedRun

    cfg = small_config(
        model={"add_empty_sprite": True, "lambda_empty_sprite": 0.1, "transformation_sequence": "color_projective"}
    )
    model = DTISprites(cfg["model"], (35, 35), 3, lambda n: torch.rand(n, 3, 35, 35)).eval()
    with torch.no_grad():
        model.masks.fill_(-100.0)  # every sprite invisible: the empty sprite costs less, so it wins
    run = TrainedRun(model, cfg, Path("unsaved"), torch.device("cpu"))
    layers = run.decompose(torch.rand(1, 3, 35, 35))[0].objects["layers"]
    assert all(layer["empty_sprite"] and layer["placement"] is None for layer in layers)
    assert [t["module"] for t in layers[0]["transformations"]] == ["color", "projective", "color", "position"]
