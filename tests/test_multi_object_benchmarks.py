"""Multi-object benchmarks beyond Tetrominoes: the Multi-dSprites generator and the dsprites
and clevr6 configs (loading, real-size forward pass, a short CPU run each)."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from dti_sprites import cli
from dti_sprites.config import validate
from dti_sprites.config_files import load_config
from dti_sprites.data import build_dataset
from dti_sprites.data import dsprites as ds
from dti_sprites.errors import DataError
from dti_sprites.model.sprites_model import DTISprites
from dti_sprites.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
N = 24


def _read(path):
    return np.array(Image.open(path))


@pytest.fixture(scope="module")
def dsprites_dir(tmp_path_factory):
    return ds.generate_dsprites(tmp_path_factory.mktemp("data") / "dsprites_gray", N, seed=0, progress=False)


# --- Multi-dSprites generator -------------------------------------------------------------


def _single(shape, radius=20.0, angle=0.0, centre=32.0):
    args = [np.array([v], dtype=float) for v in (shape, centre, centre, radius, angle)]
    return ds.shape_masks(args[0].astype(int), *args[1:])[0]  # (64, 64) bool


def test_shapes_are_a_square_an_ellipse_and_a_heart():
    square, ellipse, heart = (_single(s) for s in range(3))
    assert abs(square.sum() - 40 * 40) / 1600 < 0.03
    assert abs(ellipse.sum() - np.pi * 20 * 10) / (np.pi * 200) < 0.03
    assert abs(_single(0, angle=np.pi / 4).sum() - 1600) / 1600 < 0.03  # rotation keeps the area
    cols = np.flatnonzero(_single(0, angle=np.pi / 4).any(0))
    assert cols.max() - cols.min() + 1 >= 54  # a diamond: as wide as the square's diagonal (56.6)
    rows, cols = np.nonzero(ellipse)
    assert np.ptp(cols) > 1.8 * np.ptp(rows)  # long axis horizontal at angle 0
    assert np.array_equal(heart, heart[:, ::-1])  # symmetric about its vertical axis
    top_of_column = heart.argmax(0)  # first covered row per column
    assert top_of_column[32] > top_of_column[heart.any(0)].min() + 2  # the notch between the two lobes
    bottom_rows = np.flatnonzero(heart.any(1))[-2:]
    assert all(np.flatnonzero(heart[r]).size <= 4 for r in bottom_rows)  # the point is at the bottom
    assert not np.array_equal(_single(2, angle=np.pi / 2), heart)


def test_every_shape_stays_within_its_bounding_radius():
    rng = np.random.default_rng(0)
    shape, angle = rng.integers(3, size=60), rng.uniform(0, 2 * np.pi, size=60)
    radius = rng.uniform(*ds.RADIUS_RANGE, size=60)
    masks = ds.shape_masks(shape, np.full(60, 32.0), np.full(60, 32.0), radius, angle)  # (60, 64, 64)
    yy, xx = np.mgrid[:64, :64] + 0.5
    dist = np.hypot(xx - 32, yy - 32)
    for m, r in zip(masks, radius):
        assert m.any() and dist[m].max() <= ds.BOUND * r


def test_colours_are_saturated():
    rgb = ds.saturated_colors(np.array([0.0, 1 / 3, 2 / 3, 0.5, 0.9]), np.array([1.0, 1.0, 1.0, 0.8, 0.75]))
    assert rgb[:3].tolist() == [[255, 0, 0], [0, 255, 0], [0, 0, 255]]
    assert rgb[3].tolist() == [0, 204, 204]
    assert (rgb.min(1) == 0).all() and (rgb.max(1) == np.round(255 * np.array([1, 1, 1, 0.8, 0.75]))).all()


def test_generated_scenes_follow_the_format(dsprites_dir):
    assert sorted(p.name for p in dsprites_dir.iterdir()) == ["images", "masks", "sem_masks"]
    counts, classes = set(), set()
    for i in range(N):
        image = _read(dsprites_dir / "images" / f"{i}.png")
        inst = _read(dsprites_dir / "masks" / f"{i}.png")
        sem = _read(dsprites_dir / "sem_masks" / f"{i}.png")
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        assert inst.shape == sem.shape == (64, 64) and inst.dtype == sem.dtype == np.uint8
        n = int(inst.max())
        assert 2 <= n <= 5 and set(np.unique(inst)) == set(range(n + 1))  # ids 1..n, all visible
        counts.add(n)
        bkg = np.unique(image[inst == 0], axis=0)
        assert len(bkg) == 1 and bkg[0, 0] == bkg[0, 1] == bkg[0, 2]  # one uniform grey
        assert ((sem == 0) == (inst == 0)).all()
        for k in range(1, n + 1):
            piece = inst == k
            assert piece.sum() >= ds.MIN_VISIBLE
            colours = np.unique(image[piece], axis=0)
            assert len(colours) == 1 and int(colours[0].max()) - int(colours[0].min()) >= 190  # saturated
            shape = np.unique(sem[piece])
            assert len(shape) == 1 and 1 <= shape[0] <= 3
            classes.add(int(shape[0]))
    assert classes == {1, 2, 3} and len(counts) >= 3


def test_later_sprites_occlude_earlier_ones():
    params = ds.draw_chunk(np.random.default_rng(5), 64)
    images, inst, sem, valid = ds.rasterise(params)
    covered = ds.shape_masks(params["shape"], params["cx"], params["cy"], params["radius"], params["angle"])
    used = np.arange(ds.MAX_SPRITES)[None, :] < params["n_sprites"][:, None]  # (B, S)
    covered &= used[:, :, None, None]  # (B, S, H, W)
    ids = np.arange(1, ds.MAX_SPRITES + 1)[None, :, None, None]
    front = (covered * ids).max(1)  # the last-drawn sprite covering each pixel, 0 if none
    assert (covered.sum(1) >= 2).sum() > 500  # overlaps do happen in this sample
    assert np.array_equal(inst, front)
    for b in range(64):
        for s in range(int(params["n_sprites"][b])):
            seen = inst[b] == s + 1
            assert (images[b][seen] == params["color"][b, s]).all()
            assert (sem[b][seen] == params["shape"][b, s] + 1).all()
    visible = np.stack([(inst == k).sum((1, 2)) for k in range(1, ds.MAX_SPRITES + 1)], 1)  # (B, S)
    assert np.array_equal(valid, ((visible >= ds.MIN_VISIBLE) | ~used).all(1))
    assert not valid.all()  # some scenes are redrawn, so the check is exercised


def test_generator_is_deterministic_per_seed(tmp_path):
    a = ds.generate_dsprites(tmp_path / "a", 5, seed=3, progress=False)
    b = ds.generate_dsprites(tmp_path / "b", 5, seed=3, progress=False)
    c = ds.generate_dsprites(tmp_path / "c", 5, seed=4, progress=False)
    longer = ds.generate_dsprites(tmp_path / "d", 8, seed=3, progress=False)
    files = [f"{sub}/{i}.png" for sub in ("images", "masks", "sem_masks") for i in range(5)]
    assert all((a / f).read_bytes() == (b / f).read_bytes() == (longer / f).read_bytes() for f in files)
    assert any((a / f).read_bytes() != (c / f).read_bytes() for f in files)


def test_generator_refuses_a_non_empty_folder_and_leaves_nothing_when_interrupted(tmp_path, monkeypatch):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(DataError, match="full.*not empty"):
        ds.generate_dsprites(tmp_path / "full", 2, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["full"]

    saved = []

    def failing_save(array, path):
        if len(saved) == 4:
            raise RuntimeError("disk full")
        saved.append(path)
        Image.fromarray(array).save(path)

    monkeypatch.setattr(ds, "_save_png", failing_save)
    with pytest.raises(RuntimeError, match="disk full"):
        ds.generate_dsprites(tmp_path / "sub" / "dsprites_gray", 10, progress=False)
    assert list((tmp_path / "sub").iterdir()) == []


def test_make_data_and_prepare_data_produce_dsprites(tmp_path):
    cli.main(["make-data", "dsprites_gray", "--out", str(tmp_path / "made"), "--n", "3", "--no-progress"])
    assert sorted(p.name for p in (tmp_path / "made" / "masks").iterdir()) == ["0.png", "1.png", "2.png"]
    raw = yaml.safe_load((CONFIGS / "dsprites.yml").read_text())
    raw["dataset"].update(data_root=str(tmp_path / "root"), synthetic_size=4)
    (tmp_path / "cfg.yml").write_text(yaml.safe_dump(raw))
    cli.main(["prepare-data", "--config", str(tmp_path / "cfg.yml")])
    loaded, _ = build_dataset(load_config(tmp_path / "cfg.yml"), "train")
    assert len(loaded) == 4 and loaded.img_size == (64, 64) and loaded.n_classes == 4


def test_prepare_data_refuses_a_generated_folder_of_another_size(tmp_path, capsys):
    # An earlier version's demo folder, smaller than the config now asks for, must not be trained on silently.
    cli.main(["make-data", "tetrominoes", "--out", str(tmp_path / "demo"), "--n", "3", "--no-progress"])
    raw = yaml.safe_load((CONFIGS / "tetro_demo.yml").read_text())
    raw["dataset"].update(path=str(tmp_path / "demo"), synthetic_size=5)
    (tmp_path / "cfg.yml").write_text(yaml.safe_dump(raw))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["prepare-data", "--config", str(tmp_path / "cfg.yml")])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert "holds 3 images" in message and "dataset.synthetic_size asks for 5" in message
    raw["dataset"]["synthetic_size"] = 3  # the size it holds: accepted, nothing regenerated
    (tmp_path / "cfg.yml").write_text(yaml.safe_dump(raw))
    cli.main(["prepare-data", "--config", str(tmp_path / "cfg.yml")])
    assert len(list((tmp_path / "demo" / "images").iterdir())) == 3


# --- configs ------------------------------------------------------------------------------


def test_dsprites_and_clevr6_configs_have_the_original_values():
    expected = {
        "dsprites.yml": dict(
            name="dsprites_gray",
            K=3,
            M=1,
            L=5,
            freeze=10,
            encoder=("resnet32", [4, 4]),
            seqs=("identity_similarity", "color", "color_position"),
            curriculum=[20],
            inits=("constant", "gaussian", "constant"),
            sprite_size=[28, 28],
            std=7.0,
            milestones=[250, 500],
            epochs=510,
            intervals=(2000, 4000, 100),
        ),
        "clevr6.yml": dict(
            name="clevr6",
            K=6,
            M=1,
            L=6,
            freeze=40,
            encoder=("resnet18", [2, 2]),
            seqs=("identity_projective", "color", "color_position"),
            curriculum=[150],
            inits=("constant", "gaussian", "mean"),
            sprite_size=[40, 40],
            std=10.0,
            milestones=[250, 400],
            epochs=450,
            intervals=(1000, 2000, 250),
        ),
    }
    for file, e in expected.items():
        cfg = load_config(CONFIGS / file)
        d, m, t = cfg["dataset"], cfg["model"], cfg["training"]
        assert d["name"] == e["name"]
        assert (m["n_sprites"], m["n_backgrounds"], m["n_objects"]) == (e["K"], e["M"], e["L"])
        assert m["freeze_sprite"] == e["freeze"]
        assert (m["encoder_name"], m["with_pool"]) == e["encoder"]
        assert (
            m["transformation_sequence"],
            m["transformation_sequence_bkg"],
            m["transformation_sequence_layer"],
        ) == e["seqs"]
        assert m["curriculum_learning"] == e["curriculum"]
        assert m["curriculum_learning_bkg"] is False and m["curriculum_learning_layer"] is False
        assert (m["proto_init"], m["mask_init"], m["bkg_init"]) == e["inits"]
        assert (m["sprite_size"], m["gaussian_weights_std"]) == (e["sprite_size"], e["std"])
        assert m["pred_occlusion"] and m["estimate_minimum"] and m["greedy_algo_iter"] == 3
        assert m["add_empty_sprite"] and m["lambda_empty_sprite"] == 1e-4 and m["inject_noise"] == 0.4
        assert (t["batch_size"], t["optimizer"]["lr"]) == (32, 1e-4)
        assert t["optimizer"]["transformer"] == {"weight_decay": 1e-6}
        assert t["scheduler"]["name"] == "multi_step" and t["scheduler"]["gamma"] == [1.0, 0.1]
        assert (t["scheduler"]["milestones"], t["n_epoches"], t["n_iterations"]) == (e["milestones"], e["epochs"], None)
        assert (t["train_stat_interval"], t["val_stat_interval"], t["check_cluster_interval"]) == e["intervals"]
        assert t["eval_semantic"] and t["eval_with_bkg"]


@pytest.mark.parametrize("config, size", [("dsprites.yml", 64), ("clevr6.yml", 128)])
def test_configs_build_the_paper_model_at_full_size(config, size):
    cfg = load_config(CONFIGS / config)
    gen = torch.Generator().manual_seed(0)
    model = DTISprites(cfg["model"], (size, size), 3, lambda n: torch.rand(n, 3, size, size, generator=gen))
    model.eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, size, size, generator=gen))
    L, K = cfg["model"]["n_objects"], cfg["model"]["n_sprites"]
    assert model.n_candidates == K + 1  # the empty sprite
    assert out.recon.shape == (2, 3, size, size) and out.sprite_idx.shape == (L, 2)
    delta = out.occlusion  # (B, L + 1, L + 1), background first
    assert delta.shape == (2, L + 1, L + 1)
    off_diagonal = ~torch.eye(L, dtype=torch.bool)
    assert torch.allclose(delta[:, 1:, 1:][:, off_diagonal], torch.tensor(0.5))  # zero-initialised order head
    assert (delta[:, 0] == 0).all() and (delta[:, 1:, 0] == 1).all()  # the background is behind everything


# --- short CPU runs on each dataset's on-disk layout -------------------------------------


def _write_clevr_like(root: Path, n: int = 8, size: int = 128) -> Path:
    """A few CLEVR6-shaped files: grey floor, 3 to 6 coloured disks, instance and class ids."""
    rng = np.random.default_rng(0)
    for sub in ("images", "masks", "sem_masks"):
        (root / sub).mkdir(parents=True)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        image = np.full((size, size, 3), 120, dtype=np.uint8)
        inst = np.zeros((size, size), dtype=np.uint8)
        sem = np.zeros((size, size), dtype=np.uint8)
        for k in range(1, rng.integers(3, 7) + 1):
            cy, cx, r = rng.integers(20, size - 20, size=2).tolist() + [int(rng.integers(8, 18))]
            disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            image[disk] = rng.integers(0, 256, size=3)
            inst[disk], sem[disk] = k, rng.integers(1, 7)
        Image.fromarray(image).save(root / "images" / f"{i}.png")
        Image.fromarray(inst).save(root / "masks" / f"{i}.png")
        Image.fromarray(sem).save(root / "sem_masks" / f"{i}.png")
    return root


def _smoke_config(config: str, data_path: Path, dataset=None, model=None) -> dict:
    raw = yaml.safe_load((CONFIGS / config).read_text())
    raw["dataset"].update(path=str(data_path), **(dataset or {}))
    # Sprites unfrozen and every curriculum module on from the start, so the whole model trains.
    raw["model"].update(freeze_sprite=0, curriculum_learning=[0], **(model or {}))
    raw["training"].update(
        batch_size=8,
        n_workers=0,
        n_epoches=None,
        n_iterations=3,
        train_stat_interval=1,
        val_stat_interval=2,
        check_cluster_interval=1,
        seed=0,
    )
    return validate(raw)


@pytest.mark.parametrize("config", ["dsprites.yml", "clevr6.yml"])
def test_short_run_trains_and_evaluates(config, dsprites_dir, tmp_path):
    if config == "dsprites.yml":
        cfg = _smoke_config(config, dsprites_dir, model={"encoder_name": "default"})
        n_classes, n_images = 4, N
    else:
        data = _write_clevr_like(tmp_path / "clevr6")
        cfg = _smoke_config(
            config, data, dataset={"img_size": [64, 64]}, model={"sprite_size": [20, 20], "gaussian_weights_std": 5}
        )
        n_classes, n_images = 7, 8
    trainer = Trainer(cfg, "cpu", tmp_path / "runs", progress=False, quiet=True)
    before = trainer.model.prototypes.detach().clone()
    scores = trainer.run()
    assert trainer.iteration == 3 and trainer.train_set.n_classes == n_classes
    assert len(trainer.eval_set) == n_images
    assert not torch.equal(before, trainer.model.prototypes.detach())  # sprites learned
    assert {"ari", "ari_fg", "ari_fg_filled", "global_acc", "mean_iou"} <= set(scores)
    assert all(np.isfinite(scores[k]) and -1 <= scores[k] <= 1 for k in ("ari", "ari_fg", "ari_fg_filled"))
    val_rows = (trainer.run_dir / "val_metrics.tsv").read_text().splitlines()
    assert len(val_rows) == 2 and "ari_fg_filled" in val_rows[0]  # header + the validation at iteration 2
