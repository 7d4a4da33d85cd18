"""Synthetic stand-in for Multi-dSprites with coloured sprites on a grey background
(`dsprites_gray`).

Writes the on-disk layout the multi-object loader reads (docs/method.md §4):

    images/{i}.png     RGB 8-bit, 64x64, one uniform grey background
    masks/{i}.png      'L' 8-bit, instance ids: 0 background, 1..n in drawing order
    sem_masks/{i}.png  'L' 8-bit, class ids: 0 background, 1 square, 2 ellipse, 3 heart

Each image holds 2 to 5 sprites (`objects` sets another range, e.g. (10, 10) for the
ten-object scenes of dsprites10.yml), each with a random shape, scale, rotation, position
and saturated colour; a sprite drawn later hides the ones below it, and the masks record only
what is visible. Scenes are rasterised many at a time: every shape is an implicit function
evaluated on the pixel grid in the sprite's own rotated and scaled frame.
"""

from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from ..errors import DataError
from .writing import new_dataset_dir
from .writing import save_png as _save_png  # a module-level name, so tests can make saving fail

IMG_SIZE = 64
MIN_SPRITES, MAX_SPRITES = 2, 5  # Multi-dSprites' range, the default
MAX_OBJECTS = 12  # 12 keep 41% of drawn scenes (10: 57-63%); every sprite must show MIN_VISIBLE pixels
SHAPES = ("square", "ellipse", "heart")  # shape id s is stored as s + 1 in sem_masks/
RADIUS_RANGE = (5.0, 10.0)  # half-extent of a sprite in pixels (canonical frame [-1, 1]^2)
VALUE_RANGE = (0.75, 1.0)  # HSV value of the sprite colours; saturation is always 1
MIN_VISIBLE = 12  # a scene is redrawn when occlusion leaves a sprite fewer pixels than this
BOUND = np.sqrt(2.0)  # every shape lies within this radius of its centre (canonical units)
CHUNK = 256  # scenes rasterised per draw; fixed, so the images of a seed never change

_ELLIPSE_MINOR = 0.5  # ratio of the ellipse's short to long axis
_HEART_SCALE, _HEART_SHIFT = 1.15, 0.12  # fit the heart curve's extent to [-1, 1]^2


def shape_masks(
    shape: np.ndarray, cx: np.ndarray, cy: np.ndarray, radius: np.ndarray, angle: np.ndarray, size: int = IMG_SIZE
) -> np.ndarray:
    """Pixels covered by each sprite, ignoring the others: bool (*P, size, size).

    All arguments share one shape P: shape id, centre (pixels, x to the right, y down),
    half-extent (pixels) and rotation (radians, counter-clockwise on screen).
    """
    centres = np.arange(size) + 0.5
    dx = centres[None, :] - cx[..., None, None]  # (*P, 1, W) - (*P, 1, 1) -> (*P, 1, W)
    dy = centres[:, None] - cy[..., None, None]  # (*P, H, 1)
    cos, sin = np.cos(angle)[..., None, None], np.sin(angle)[..., None, None]
    r = radius[..., None, None]
    u = (cos * dx - sin * dy) / r  # (*P, H, W): the pixel in the sprite's frame
    v = (sin * dx + cos * dy) / r  # v points down, like the rows
    shape = shape[..., None, None]

    square = np.maximum(np.abs(u), np.abs(v)) <= 1
    ellipse = u**2 + (v / _ELLIPSE_MINOR) ** 2 <= 1
    # Heart curve (x^2 + y^2 - 1)^3 <= x^2 y^3 with y up and its point at the bottom.
    x, y = _HEART_SCALE * u, -_HEART_SCALE * v + _HEART_SHIFT
    heart = (x**2 + y**2 - 1) ** 3 - x**2 * y**3 <= 0
    return np.where(shape == 0, square, np.where(shape == 1, ellipse, heart))


def saturated_colors(hue: np.ndarray, value: np.ndarray) -> np.ndarray:
    """HSV (hue in [0, 1), saturation 1, value) to 8-bit RGB: uint8 (*P, 3)."""
    n = np.array([5.0, 3.0, 1.0])  # the standard HSV -> RGB offsets of R, G, B
    k = (n + hue[..., None] * 6) % 6  # (*P, 3)
    rgb = value[..., None] * (1 - np.clip(np.minimum(k, 4 - k), 0, 1))
    return np.round(rgb * 255).astype(np.uint8)


def draw_chunk(
    rng: np.random.Generator, size: int = CHUNK, objects: tuple[int, int] = (MIN_SPRITES, MAX_SPRITES)
) -> dict[str, np.ndarray]:
    """Random parameters of `size` scenes of objects[0] to objects[1] sprites, objects[1] slots
    each (unused slots are ignored)."""
    low, slots = objects
    radius = rng.uniform(*RADIUS_RANGE, size=(size, slots))
    margin = BOUND * radius  # keeps every sprite inside the image
    return {
        "n_sprites": rng.integers(low, slots + 1, size=size),  # (B,)
        "shape": rng.integers(len(SHAPES), size=(size, slots)),  # (B, S)
        "radius": radius,
        "angle": rng.uniform(0, 2 * np.pi, size=(size, slots)),
        "cx": margin + rng.uniform(size=(size, slots)) * (IMG_SIZE - 2 * margin),
        "cy": margin + rng.uniform(size=(size, slots)) * (IMG_SIZE - 2 * margin),
        "color": saturated_colors(rng.uniform(size=(size, slots)), rng.uniform(*VALUE_RANGE, size=(size, slots))),
        "grey": rng.integers(256, size=size),  # (B,)
    }


def rasterise(params: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Scenes from their parameters.

    Returns images uint8 (B, H, W, 3), instance ids uint8 (B, H, W), class ids uint8
    (B, H, W) and a bool (B,) that is false where a sprite kept under MIN_VISIBLE pixels.
    """
    covered = shape_masks(
        params["shape"], params["cx"], params["cy"], params["radius"], params["angle"]
    )  # (B, S, H, W)
    n_scenes, slots = covered.shape[:2]
    used = np.arange(slots)[None, :] < params["n_sprites"][:, None]  # (B, S)
    inst = np.zeros((n_scenes, IMG_SIZE, IMG_SIZE), dtype=np.uint8)  # (B, H, W)
    for s in range(slots):  # painter's order: later sprites overwrite earlier ones
        inst[covered[:, s] & used[:, s, None, None]] = s + 1
    visible = (inst[:, None] == np.arange(1, slots + 1)[None, :, None, None]).sum((2, 3))  # (B, S)
    valid = ((visible >= MIN_VISIBLE) | ~used).all(1)

    grey = np.repeat(params["grey"].astype(np.uint8)[:, None, None], 3, axis=2)  # (B, 1, 3)
    palette = np.concatenate([grey, params["color"]], axis=1)  # (B, 1 + S, 3): row 0 is the background
    classes = np.concatenate([np.zeros((n_scenes, 1), np.uint8), params["shape"].astype(np.uint8) + 1], axis=1)
    scene = np.arange(n_scenes)[:, None, None]
    return palette[scene, inst], inst, classes[scene, inst], valid


def scenes(
    rng: np.random.Generator, objects: tuple[int, int] = (MIN_SPRITES, MAX_SPRITES)
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """An endless stream of valid (image, instance, semantic) scenes."""
    while True:
        # Scenes per draw scale down with the slots, so a draw's arrays keep their size.
        images, insts, sems, valid = rasterise(draw_chunk(rng, CHUNK * MAX_SPRITES // objects[1], objects))
        for i in np.flatnonzero(valid):
            yield images[i], insts[i], sems[i]


def generate_dsprites(
    out_dir: str | Path, n: int, seed: int = 0, progress: bool = True, objects: tuple[int, int] | None = None
) -> Path:
    """Write n images with masks to out_dir and return it; objects (min, max) sprites per image
    (None: 2 to 5, as Multi-dSprites).

    Generation happens in a temporary sibling folder that is renamed at the end, so an
    interrupted run never leaves a half-written dataset behind. The first n images of a
    seed do not depend on n.
    """
    out_dir = Path(out_dir)
    objects = (MIN_SPRITES, MAX_SPRITES) if objects is None else tuple(objects)
    if n < 1:
        raise DataError(f"cannot generate {n} images into {out_dir}: expected n >= 1")
    if not 1 <= objects[0] <= objects[1] <= MAX_OBJECTS:
        raise DataError(
            f"cannot draw {objects[0]} to {objects[1]} sprites per image: expected 1 <= min <= max <= {MAX_OBJECTS}"
        )
    with new_dataset_dir(out_dir) as tmp:
        stream = scenes(np.random.default_rng(seed), objects)
        for i in tqdm(range(n), desc=f"dsprites_gray -> {out_dir}", disable=not progress):
            image, inst, sem = next(stream)
            _save_png(image, tmp / "images" / f"{i}.png")
            _save_png(inst, tmp / "masks" / f"{i}.png")
            _save_png(sem, tmp / "sem_masks" / f"{i}.png")
    return out_dir
