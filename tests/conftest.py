"""Shared fixtures: small configs and a small generated dataset."""

import pytest
import torch

from dti_sprites.config import validate
from dti_sprites.data.tetrominoes import generate_tetrominoes


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def small_config(model=None, training=None, dataset=None) -> dict:
    """A config small enough to train in seconds on a CPU."""
    raw = {
        "dataset": {"name": "tetrominoes", **(dataset or {})},
        "model": {
            "n_sprites": 4,
            "n_objects": 2,
            "n_backgrounds": 1,
            "encoder_name": "default",
            "transformation_sequence": "color_affine",
            "transformation_sequence_layer": "color_position",
            "transformation_sequence_bkg": "color",
            "sprite_size": [8, 8],
            "gaussian_weights_std": 3,
            "estimate_minimum": True,
            "inject_noise": 0.4,
            **(model or {}),
        },
        "training": {
            "batch_size": 8,
            "n_iterations": 6,
            "optimizer": {"lr": 1e-3},
            "train_stat_interval": 2,
            "val_stat_interval": 3,
            "check_cluster_interval": 2,
            "seed": 1,
            **(training or {}),
        },
    }
    return validate(raw)


@pytest.fixture(scope="session")
def tetro_dir(tmp_path_factory):
    """A 120-image synthetic Tetrominoes set, generated once per test session."""
    out = tmp_path_factory.mktemp("data") / "tetrominoes"
    generate_tetrominoes(out, 120, seed=0, progress=False)
    return out


def assert_same_state(a: dict, b: dict) -> None:
    """Two state dicts hold identical tensors and identical extra state (curricula)."""
    assert a.keys() == b.keys()
    for name, value in a.items():
        same = (
            (value.dtype == b[name].dtype and torch.equal(value, b[name]))
            if torch.is_tensor(value)
            else value == b[name]
        )
        assert same, name
