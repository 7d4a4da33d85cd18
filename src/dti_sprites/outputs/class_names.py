"""Names of the true classes of each benchmark, and why a per-class table may hold one more
class than the model has sprites (the background). Used by the report's score tables.

Class ids follow the loaders (docs/method.md §4): for multi-object sets 0 is the background and
shape s is class s + 1.
"""

from ..data.dsprites import SHAPES as DSPRITES_SHAPES
from ..data.gtsrb import GTSRB8_CLASSES

# The order of data/tetrominoes.py's SHAPES table (I 2, O 1, T 4, S 2, Z 2, J 4, L 4).
TETROMINO_NAMES = (
    "I horizontal",
    "I vertical",
    "O",
    "T stem down",
    "T stem left",
    "T stem up",
    "T stem right",
    "S horizontal",
    "S vertical",
    "Z horizontal",
    "Z vertical",
    "J 1",
    "J 2",
    "J 3",
    "J 4",
    "L 1",
    "L 2",
    "L 3",
    "L 4",
)


def class_names(dataset: str | None, n_classes: int) -> list[str]:
    """A name for each class id 0..n_classes-1 (generic "class i" where none is known)."""
    known = {
        "tetrominoes": ["background", *TETROMINO_NAMES],
        "dsprites_gray": ["background", *DSPRITES_SHAPES],
        "clevr6": ["background"],
        "gtsrb8": [f"GTSRB class {c}" for c in GTSRB8_CLASSES],
        "svhn": [f"digit {d}" for d in range(10)],
        "digits": [f"digit {d}" for d in range(10)],
        "weizmann_horse": ["background", "horse"],
    }.get(dataset or "", [])
    return [known[i] if i < len(known) else f"class {i}" for i in range(n_classes)]


def classes_note(n_classes: int, n_sprites: int | None, empty_sprite: bool, benchmark: str) -> str:
    """One paragraph: how many classes, how many sprites, and how they are matched."""
    if not n_sprites:
        return f"{n_classes} classes."
    sprites = f"{n_sprites} sprites" + (" plus the empty sprite" if empty_sprite else "")
    if benchmark == "multi_object":
        text = (
            f"{n_classes} classes: 0 is the background, 1 to {n_classes - 1} the object shapes. The model has "
            f"{sprites}. "
        )
        if n_classes == n_sprites + 1:
            text += (
                "The extra class is the background: its predicted pixels are those no object layer covers "
                "(label 0), matched to classes like a sprite. "
            )
        return text + (
            "Predicted labels are matched one-to-one to classes (Hungarian matching); a class no label "
            "is matched to scores 0."
        )
    n_clusters = n_sprites + int(empty_sprite)
    rule = (
        "each sprite is matched to one class (Hungarian matching)"
        if n_clusters == n_classes
        else "each sprite goes to its most frequent class (majority vote), as there are not as many sprites as classes"
    )
    return f"{n_classes} classes; the model has {sprites}: {rule}."
