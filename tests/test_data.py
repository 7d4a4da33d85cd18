"""Tetrominoes generator and the multi-object loader, on tiny generated sets."""

import numpy as np
import pytest
import torch
from PIL import Image

from dti_sprites.data import DATASETS, MultiObjectDataset, build_dataset, load_tensors
from dti_sprites.data import tetrominoes as tet
from dti_sprites.errors import DataError

from conftest import small_config

N = 30


@pytest.fixture(scope="module")
def tetro_dir(tmp_path_factory):
    return tet.generate_tetrominoes(tmp_path_factory.mktemp("data") / "tetrominoes", N, seed=0, progress=False)


def _read(path):
    return np.array(Image.open(path))


def _normalize(cells):
    cells = np.asarray(cells)
    return frozenset(map(tuple, cells - cells.min(axis=0)))


# --- where pieces touch ----------------------------------------------------------------------


def _placed(shape, row, col):
    return {(row + r, col + c) for r, c in tet.SHAPES[shape]}


def _pair_tilings(cells):
    """Unordered pairs of placed pieces that cover cells exactly: brute force over every
    shape and offset, independent of count_tilings' search."""
    placements = [
        frozenset(_placed(s, r, c)) for s in range(len(tet.SHAPES)) for r in range(-3, 7) for c in range(-3, 7)
    ]
    inside = [p for p in set(placements) if p <= cells]
    return sum(1 for i, a in enumerate(inside) for b in inside[i + 1 :] if not a & b and a | b == cells)


@pytest.mark.parametrize(
    "cells",
    [
        _placed(0, 0, 0) | _placed(0, 1, 3),  # two I pieces meeting at one edge: one way
        _placed(2, 0, 0) | _placed(0, 2, 0),  # an O on an I
        _placed(1, 0, 0) | _placed(1, 0, 1),  # two upright I pieces: a 4x2 block
        _placed(3, 0, 0) | _placed(5, 1, 1),  # two T pieces
    ],
)
def test_count_tilings_agrees_with_brute_force_on_two_pieces(cells):
    assert tet.count_tilings(cells, limit=100) == _pair_tilings(cells)


def test_count_tilings_of_one_piece_and_of_no_tiling():
    assert all(tet.count_tilings(_placed(s, 1, 1)) == 1 for s in range(len(tet.SHAPES)))
    assert tet.count_tilings({(0, 0), (0, 1), (0, 2)}) == 0
    assert tet.count_tilings(_placed(1, 0, 0) | _placed(1, 0, 1), limit=2) == 2  # stops at the limit


def _scene(pieces):
    """Render pieces [(shape, row, col, colour id)] with the generator's own renderer."""
    inst = np.zeros((tet.GRID, tet.GRID), dtype=np.uint8)
    for k, (shape, row, col, _) in enumerate(pieces):
        for r, c in _placed(shape, row, col):
            inst[r, c] = k + 1
    image, instance, _ = tet.render(inst, np.array([p[0] for p in pieces]), np.array([p[3] for p in pieces]))
    return image, instance


@pytest.mark.parametrize(
    ("pieces", "kind"),
    [
        ([(0, 0, 0, 0), (2, 2, 0, 0), (1, 2, 6, 0)], "apart"),  # one colour, no shared edge
        ([(0, 0, 0, 0), (0, 1, 3, 1), (2, 4, 0, 2)], "touching"),  # shared edge, other colours
        ([(0, 0, 0, 0), (0, 1, 3, 0), (2, 4, 0, 2)], "same_colour"),  # one colour, one tiling
        ([(1, 0, 0, 3), (1, 0, 1, 3), (2, 5, 5, 2)], "ambiguous"),  # one colour, a 4x2 block
    ],
)
def test_contact_kind_of_built_scenes(pieces, kind):
    assert tet.contact_kind(*_scene(pieces)) == kind


def test_contact_kind_refuses_resized_scenes():
    image, instance = _scene([(0, 0, 0, 0)])
    with pytest.raises(ValueError, match="35x35"):
        tet.contact_kind(image[:34, :34], instance[:34, :34])


# --- generator ---------------------------------------------------------------------------


def test_shape_tables_are_the_19_fixed_tetrominoes():
    shapes = [_normalize(s) for s in tet.SHAPES]
    assert len(shapes) == 19 and len(set(shapes)) == 19
    for table, shape in zip(tet.SHAPES, shapes):
        assert len(shape) == 4 and shape == frozenset(table)  # anchored at the origin
        start = next(iter(shape))
        seen, todo = {start}, [start]
        while todo:  # flood fill over 4-neighbours
            r, c = todo.pop()
            for nb in [(r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)]:
                if nb in shape and nb not in seen:
                    seen.add(nb)
                    todo.append(nb)
        assert seen == shape
    # Closed under rotation and reflection: with 19 distinct connected pieces of 4 cells,
    # this is exactly the set of fixed tetrominoes.
    for shape in shapes:
        cells = np.array(sorted(shape))
        assert _normalize(cells[:, ::-1] * [1, -1]) in shapes  # quarter turn
        assert _normalize(cells * [1, -1]) in shapes  # mirror
    primaries = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255)]
    assert sorted(tet.COLORS) == sorted(primaries)


def test_generated_scenes_follow_the_tetrominoes_facts(tetro_dir):
    assert sorted(p.name for p in tetro_dir.iterdir()) == ["images", "masks", "sem_masks"]
    shapes = [_normalize(s) for s in tet.SHAPES]
    for i in range(N):
        image = _read(tetro_dir / "images" / f"{i}.png")
        inst = _read(tetro_dir / "masks" / f"{i}.png")
        sem = _read(tetro_dir / "sem_masks" / f"{i}.png")
        assert image.shape == (35, 35, 3) and image.dtype == np.uint8
        assert inst.shape == sem.shape == (35, 35) and inst.dtype == sem.dtype == np.uint8
        assert set(np.unique(inst)) == {0, 1, 2, 3}  # one id per pixel, so no overlap
        assert (image[inst == 0] == 0).all() and (sem[inst == 0] == 0).all()
        for k in (1, 2, 3):
            piece = inst == k
            assert piece.sum() == 100  # 4 cells x 25 pixels
            colours = np.unique(image[piece], axis=0)
            assert len(colours) == 1 and tuple(colours[0]) in tet.COLORS
            classes = np.unique(sem[piece])
            assert len(classes) == 1 and 1 <= classes[0] <= 19
            rows, cols = np.nonzero(piece)
            assert (rows % 5 == rows.min() % 5).sum() == 20  # whole 5x5 cells on the lattice
            cells = np.unique(np.stack([rows // 5, cols // 5], axis=1), axis=0)
            assert len(cells) == 4
            assert _normalize(cells) == shapes[classes[0] - 1]


def test_generator_is_deterministic_per_seed(tmp_path):
    a = tet.generate_tetrominoes(tmp_path / "a", 5, seed=3, progress=False)
    b = tet.generate_tetrominoes(tmp_path / "b", 5, seed=3, progress=False)
    c = tet.generate_tetrominoes(tmp_path / "c", 5, seed=4, progress=False)
    files = [f"{sub}/{i}.png" for sub in ("images", "masks", "sem_masks") for i in range(5)]
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert any((a / f).read_bytes() != (c / f).read_bytes() for f in files)


def test_generator_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(DataError, match="out.*not empty"):
        tet.generate_tetrominoes(tmp_path / "out", 2, progress=False)
    tet.generate_tetrominoes(tmp_path / "empty_ok", 2, progress=False)  # missing is fine
    (tmp_path / "empty").mkdir()
    assert len(list((tet.generate_tetrominoes(tmp_path / "empty", 2, progress=False) / "images").iterdir())) == 2


def test_generator_leaves_nothing_when_interrupted(tmp_path, monkeypatch):
    saved = []

    def failing_save(array, path):
        if len(saved) == 2 * 3:  # two images with their masks
            raise RuntimeError("disk full")
        saved.append(path)
        Image.fromarray(array).save(path)

    monkeypatch.setattr(tet, "_save_png", failing_save)
    with pytest.raises(RuntimeError, match="disk full"):
        tet.generate_tetrominoes(tmp_path / "tetrominoes", 10, progress=False)
    assert list(tmp_path.iterdir()) == []


# --- loader ------------------------------------------------------------------------------


def test_loader_reads_generated_set(tetro_dir):
    ds = build_dataset(small_config(dataset={"path": str(tetro_dir)}), "train")[0]
    assert len(ds) == N and ds.n_channels == 3 and ds.img_size == (35, 35) and ds.n_classes == 20
    image, inst, sem = ds[0]
    assert image.shape == (3, 35, 35) and image.dtype == torch.float32
    assert 0 <= image.min() and image.max() <= 1 and image.max() == 1
    assert inst.shape == sem.shape == (35, 35) and inst.dtype == sem.dtype == torch.long
    assert torch.equal(inst, torch.from_numpy(_read(tetro_dir / "masks" / "0.png")).long())
    images, insts, sems = load_tensors(ds, indices=[2, 5])
    assert images.shape == (2, 3, 35, 35) and insts.shape == sems.shape == (2, 35, 35)
    assert torch.equal(sems[1], ds[5][2])
    assert {DATASETS.get(n).n_classes for n in ("tetrominoes", "dsprites_gray", "clevr6")} == {20, 4, 7}


def test_loader_splits(tetro_dir):
    val_a = MultiObjectDataset(tetro_dir, "val", n_val=10)
    val_b = MultiObjectDataset(tetro_dir, "val", n_val=10)
    assert len(val_a) == 10 and list(val_a.indices) == list(val_b.indices)
    assert list(val_a.indices) == sorted(set(val_a.indices)) and val_a.indices.max() < N
    assert list(MultiObjectDataset(tetro_dir, "eval").indices) == list(range(N))  # min(320, N)
    assert list(MultiObjectDataset(tetro_dir, "eval", n_eval=7).indices) == list(range(7))


def test_loader_sorts_numerically_and_resizes(tmp_path, tetro_dir):
    root = tmp_path / "set"
    for sub in ("images", "masks", "sem_masks"):
        (root / sub).mkdir(parents=True)
        for i in range(12):
            (root / sub / f"{i}.png").write_bytes((tetro_dir / sub / f"{i}.png").read_bytes())
    ds = MultiObjectDataset(root)
    assert ds.stems == list(range(12))
    assert torch.equal(ds[10][1], torch.from_numpy(_read(root / "masks" / "10.png")).long())
    big = MultiObjectDataset(root, img_size=(70, 70))
    image, inst, sem = big[3]
    assert image.shape == (3, 70, 70) and inst.shape == sem.shape == (70, 70)
    assert torch.equal(inst, ds[3][1].repeat_interleave(2, 0).repeat_interleave(2, 1))  # nearest
    assert 0 <= image.min() and image.max() <= 1


def test_loader_reads_16_bit_masks_and_grey_images(tmp_path):
    root = tmp_path / "set"
    for sub in ("images", "masks", "sem_masks"):
        (root / sub).mkdir(parents=True)
    Image.fromarray(np.full((4, 6), 128, dtype=np.uint8)).save(root / "images" / "0.png")  # 'L'
    labels = np.array([[0, 300, 1000, 65535, 2, 1]] * 4, dtype=np.uint16)
    Image.fromarray(labels).save(root / "masks" / "0.png")  # 16-bit
    Image.fromarray(labels.astype(np.uint8)).save(root / "sem_masks" / "0.png")
    image, inst, _ = MultiObjectDataset(root)[0]
    assert image.shape == (3, 4, 6) and torch.allclose(image, torch.full_like(image, 128 / 255))
    assert inst[0].tolist() == [0, 300, 1000, 65535, 2, 1]


def test_loader_errors_name_the_path(tmp_path, tetro_dir):
    missing = tmp_path / "nowhere" / "tetrominoes"
    with pytest.raises(DataError, match=f"{missing}.*make-data tetrominoes --out {missing}"):
        build_dataset(small_config(dataset={"data_root": str(tmp_path / "nowhere")}), "train")
    with pytest.raises(DataError, match="download_data.sh") as err:
        build_dataset(small_config(dataset={"name": "clevr6", "data_root": str(tmp_path / "nowhere")}), "train")
    assert "make-data" not in str(err.value)

    root = tmp_path / "set"
    (root / "images").mkdir(parents=True)
    with pytest.raises(DataError, match=f"{root / 'images'}.*no .png"):
        MultiObjectDataset(root)
    for i in range(3):
        for sub in ("images", "masks", "sem_masks"):
            (root / sub).mkdir(exist_ok=True)
            (root / sub / f"{i}.png").write_bytes((tetro_dir / sub / f"{i}.png").read_bytes())
    (root / "images" / "1.png").write_bytes((tetro_dir / "images" / "1.png").read_bytes()[:60])  # truncated
    Image.new("RGB", (40, 35)).save(root / "images" / "2.png")
    ds = MultiObjectDataset(root)
    with pytest.raises(DataError, match=f"{root / 'images' / '1.png'}"):
        ds[1]
    with pytest.raises(DataError, match=f"{root / 'images' / '2.png'} is 35x40.*35x35"):
        ds[2]
    with pytest.raises(DataError, match=f"{root / 'masks' / '2.png'} is 35x35.*35x40"):
        MultiObjectDataset(root, img_size=(35, 35))[2]  # resizing allows other sizes, not mismatched masks
    for sub in ("masks", "sem_masks"):
        Image.new("L", (40, 35)).save(root / sub / "2.png")
    assert MultiObjectDataset(root, img_size=(35, 35))[2][0].shape == (3, 35, 35)
    for sub in ("masks", "sem_masks"):
        for p in (root / sub).iterdir():
            p.unlink()
        (root / sub).rmdir()
    with pytest.raises(DataError, match=f"{root / 'masks'} not found"):
        MultiObjectDataset(root)
