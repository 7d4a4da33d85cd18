"""Synthetic stand-in for the Tetrominoes multi-object benchmark.

The real archive cannot be downloaded on every machine, so this writes a set with the same
statistics and exactly the on-disk layout the loader reads (see docs/method.md §4):

    images/{i}.png     RGB 8-bit, 35x35, black background
    masks/{i}.png      'L' 8-bit, instance ids: 0 background, 1..3 one per piece
    sem_masks/{i}.png  'L' 8-bit, class ids: 0 background, shape id + 1 (1..19)

Each image holds 3 non-overlapping tetrominoes drawn on a 7x7 lattice of 5x5-pixel cells,
each piece one flat saturated colour.
"""

from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import DataError
from .writing import new_dataset_dir
from .writing import save_png as _save_png  # a module-level name, so tests can make saving fail

IMG_SIZE = 35
CELL = 5
GRID = IMG_SIZE // CELL  # 7 cells per side
N_PIECES = 3

# The 19 fixed tetrominoes as (row, col) cell tables anchored at (0, 0); the list index is
# the shape id, so sem_masks/ stores index + 1. Order: I (2), O (1), T (4), S (2), Z (2),
# J (4), L (4); within a piece, orientations follow successive quarter turns.
SHAPES: list[tuple[tuple[int, int], ...]] = [
    # 0-1: I horizontal, vertical
    ((0, 0), (0, 1), (0, 2), (0, 3)),
    ((0, 0), (1, 0), (2, 0), (3, 0)),
    # 2: O
    ((0, 0), (0, 1), (1, 0), (1, 1)),
    # 3-6: T with the stem pointing down, left, up, right
    ((0, 0), (0, 1), (0, 2), (1, 1)),
    ((0, 1), (1, 0), (1, 1), (2, 1)),
    ((0, 1), (1, 0), (1, 1), (1, 2)),
    ((0, 0), (1, 0), (1, 1), (2, 0)),
    # 7-8: S horizontal, vertical
    ((0, 1), (0, 2), (1, 0), (1, 1)),
    ((0, 0), (1, 0), (1, 1), (2, 1)),
    # 9-10: Z horizontal, vertical
    ((0, 0), (0, 1), (1, 1), (1, 2)),
    ((0, 1), (1, 0), (1, 1), (2, 0)),
    # 11-14: J
    ((0, 1), (1, 1), (2, 0), (2, 1)),
    ((0, 0), (1, 0), (1, 1), (1, 2)),
    ((0, 0), (0, 1), (1, 0), (2, 0)),
    ((0, 0), (0, 1), (0, 2), (1, 2)),
    # 15-18: L
    ((0, 0), (1, 0), (2, 0), (2, 1)),
    ((0, 0), (0, 1), (0, 2), (1, 0)),
    ((0, 0), (0, 1), (1, 1), (2, 1)),
    ((0, 2), (1, 0), (1, 1), (1, 2)),
]

# Flat saturated colours: red, green, blue, yellow, magenta, cyan.
COLORS: list[tuple[int, int, int]] = [
    (255, 0, 0),
    (0, 255, 0),
    (0, 0, 255),
    (255, 255, 0),
    (255, 0, 255),
    (0, 255, 255),
]

_SHAPE_CELLS = [np.array(s, dtype=np.int64) for s in SHAPES]  # each (4, 2)
_SHAPE_EXTENT = [cells.max(axis=0) + 1 for cells in _SHAPE_CELLS]  # (rows, cols) spanned
_PALETTE = np.array([(0, 0, 0)] + COLORS, dtype=np.uint8)  # (1 + 6, 3), 0 = black background
_MAX_POSITION_TRIES = 100


def sample_cells(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one scene on the cell lattice.

    Returns instance ids (GRID, GRID) uint8, shape ids (N_PIECES,) and colour ids
    (N_PIECES,). Shape and colour are uniform; positions are rejection-sampled so that a
    piece never overlaps earlier ones (the scene restarts in the rare case a shape fits
    nowhere, which keeps the shape distribution uniform).
    """
    while True:
        inst = np.zeros((GRID, GRID), dtype=np.uint8)  # (7, 7)
        shapes = rng.integers(len(SHAPES), size=N_PIECES)
        colors = rng.integers(len(COLORS), size=N_PIECES)
        for k, shape in enumerate(shapes):
            cells = _SHAPE_CELLS[shape]
            h, w = _SHAPE_EXTENT[shape]
            for _ in range(_MAX_POSITION_TRIES):
                r = rng.integers(GRID - h + 1)
                c = rng.integers(GRID - w + 1)
                rows, cols = cells[:, 0] + r, cells[:, 1] + c
                if not inst[rows, cols].any():
                    inst[rows, cols] = k + 1
                    break
            else:
                break
        else:
            return inst, shapes, colors


def render(inst_cells: np.ndarray, shapes: np.ndarray, colors: np.ndarray):
    """Upsample a cell scene to pixels: image (H, W, 3), instance (H, W), semantic (H, W)."""
    inst = np.repeat(np.repeat(inst_cells, CELL, axis=0), CELL, axis=1)  # (35, 35) uint8
    color_of = np.concatenate([[0], colors + 1]).astype(np.uint8)  # instance id -> palette id
    sem_of = np.concatenate([[0], shapes + 1]).astype(np.uint8)  # instance id -> class id
    image = _PALETTE[color_of[inst]]  # (35, 35, 3) uint8
    return image, inst, sem_of[inst]


def generate_tetrominoes(out_dir: str | Path, n: int, seed: int = 0, progress: bool = True) -> Path:
    """Write n images with masks to out_dir and return it.

    Generation happens in a temporary sibling folder that is renamed at the end, so an
    interrupted run never leaves a half-written dataset behind.
    """
    out_dir = Path(out_dir)
    if n < 1:
        raise DataError(f"cannot generate {n} images into {out_dir}: expected n >= 1")
    with new_dataset_dir(out_dir) as tmp:
        rng = np.random.default_rng(seed)
        for i in tqdm(range(n), desc=f"tetrominoes -> {out_dir}", disable=not progress):
            image, inst, sem = render(*sample_cells(rng))
            _save_png(image, tmp / "images" / f"{i}.png")
            _save_png(inst, tmp / "masks" / f"{i}.png")
            _save_png(sem, tmp / "sem_masks" / f"{i}.png")
    return out_dir


# ---- where pieces touch: what a scene asks of a decomposition --------------------------------
CONTACT_KINDS = ("apart", "touching", "same_colour", "ambiguous")


def count_tilings(cells: set[tuple[int, int]], limit: int = 2) -> int:
    """How many ways the lattice cells split exactly into tetrominoes, counted up to `limit`.

    Two touching pieces of one colour show only their union; when it tiles in more than one
    way, no model can tell from the pixels which pieces were drawn."""
    if not cells:
        return 1
    first = min(cells)  # every tiling covers the smallest cell with some piece's some cell
    found = 0
    for shape in _SHAPE_CELLS:
        for anchor in shape:
            placed = {(first[0] + r - anchor[0], first[1] + c - anchor[1]) for r, c in shape}
            if min(placed) == first and placed <= cells:
                found += count_tilings(cells - placed, limit - found)
                if found >= limit:
                    return found
    return found


def contact_kind(image: np.ndarray, instance: np.ndarray) -> str:
    """One of CONTACT_KINDS for a scene: image (35, 35, 3) uint8, instance ids (35, 35).

    apart: no two pieces share an edge; touching: some do, all of different colours;
    same_colour: two pieces of one colour share an edge, and their union tiles one way only;
    ambiguous: such a union tiles in several ways."""
    if instance.shape != (IMG_SIZE, IMG_SIZE):
        raise ValueError(f"contact_kind: a scene of {instance.shape}; expected the generator's {IMG_SIZE}x{IMG_SIZE}")
    centres = slice(CELL // 2, IMG_SIZE, CELL)
    colour, inst = image[centres, centres].astype(np.int64), instance[centres, centres]  # (7, 7, 3), (7, 7)
    pairs = ((inst[:, :-1], inst[:, 1:]), (inst[:-1], inst[1:]))  # horizontal and vertical neighbours
    if not any(((a > 0) & (b > 0) & (a != b)).any() for a, b in pairs):
        return "apart"
    kind = "touching"
    # Regions of one colour joined across pieces, found by flood fill over the lattice.
    seen = np.zeros_like(inst, dtype=bool)
    for start in zip(*np.nonzero(inst)):
        if seen[start]:
            continue
        region, stack = set(), [start]
        seen[start] = True
        while stack:
            r, c = stack.pop()
            region.add((int(r), int(c)))
            for q in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                inside = 0 <= q[0] < GRID and 0 <= q[1] < GRID
                if inside and not seen[q] and inst[q] > 0 and (colour[q] == colour[r, c]).all():
                    seen[q] = True
                    stack.append(q)
        if len({int(inst[p]) for p in region}) > 1:
            if count_tilings(region) > 1:
                return "ambiguous"
            kind = "same_colour"
    return kind
