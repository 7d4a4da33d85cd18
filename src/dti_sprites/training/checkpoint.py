"""Checkpoints (`model.pkl`): written atomically, read without executing anything.

A checkpoint holds only tensors and plain Python values (the config travels as a dict), so
`torch.load(weights_only=True)` can read it; a file that tries to build arbitrary objects
is refused rather than run.
"""

import os
import pickle
import random
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from ..config import SCHEMA, selection_of, upgrade_model_keys
from ..errors import CheckpointError, first_line

CHECKPOINT_NAME = "model.pkl"
BEST_CHECKPOINT_NAME = "model_best.pkl"  # lowest validation loss so far


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """Write to a temporary sibling, flush to disk, then rename: never a half-written file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); expected a model.pkl written by training")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's note on pickle protocols
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        culprit = re.search(r"(?:unsupported|Unsupported global:) GLOBAL (\S+)", str(err))
        what = f" ({culprit.group(1)})" if culprit else ""
        raise CheckpointError(
            f"checkpoint {path} was refused: it holds more than tensors and plain values{what}, "
            "and loading it could run code"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} is unreadable or truncated: {first_line(err, 160)}") from None


def rng_state() -> dict:
    """Every random generator the training step touches, as plain values and tensors."""
    np_state = np.random.get_state()
    state = {
        "python": list(random.getstate()[1]) + [random.getstate()[2]],
        "python_version": random.getstate()[0],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    internal = tuple(int(v) for v in state["python"][:-1])
    random.setstate((state["python_version"], internal, state["python"][-1]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_trained_model(path: str | Path, device="cpu"):
    """Rebuild a DTISprites model from a checkpoint (file or run folder), in eval mode."""
    from ..model.sprites_model import DTISprites

    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, dict) or not {"model_kwargs", "model_state"} <= set(ckpt):
        raise CheckpointError(
            f"checkpoint {path} holds no model_kwargs and model_state; expected a model.pkl "
            "written by dti-sprites training"
        )
    kwargs = ckpt["model_kwargs"]
    C, (H, W) = kwargs["n_channels"], kwargs["img_size"]
    # Data-driven initialisations are overwritten by the saved weights: feed them blanks.
    cfg = current_model_config(kwargs["cfg"])
    model = DTISprites(cfg, (H, W), C, sample_images=lambda n: torch.zeros(n, C, H, W))
    try:
        model.load_state_dict(ckpt["model_state"])
    except RuntimeError as err:
        raise CheckpointError(
            f"checkpoint {path}: its weights do not fit the model its config describes: {first_line(err)}"
        ) from None
    return model.to(device).eval(), ckpt


def current_model_config(saved: dict) -> dict:
    """A checkpoint's model section as today's schema reads it: renamed keys under their new
    names, and every key added since at its default."""
    saved = upgrade_model_keys(saved)
    saved = {**{k: key.default for k, key in SCHEMA["model"].items() if k not in saved}, **saved}
    saved["selection"] = selection_of(saved)  # written before the key: estimate_minimum said it
    return saved


def check_compatible(saved: dict, current: dict) -> None:
    """Refuse to resume with a model config that differs from the checkpoint's.

    A key added to the schema after the checkpoint was written counts as its default.
    """
    saved = current_model_config(saved)
    differ = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if differ:
        raise CheckpointError(
            "checkpoint was trained with another model config; keys that differ: "
            + ", ".join(f"model.{k} ({saved.get(k)!r} vs {current.get(k)!r})" for k in differ)
        )


def find_latest_run(runs_root: str | Path, dataset: str, tag: str) -> Path | None:
    """The most recently written run folder of this tag that holds a checkpoint (`resume: auto`)."""
    folder = Path(runs_root) / dataset
    if not folder.is_dir():
        return None
    candidates = [
        p
        for p in folder.iterdir()
        if p.is_dir()
        and (p / CHECKPOINT_NAME).is_file()
        and (p.name.split("_", 1)[-1] == tag or p.name.split("_", 1)[-1].rsplit("_", 1)[0] == tag)
    ]
    return max(candidates, key=lambda p: (p / CHECKPOINT_NAME).stat().st_mtime, default=None)
