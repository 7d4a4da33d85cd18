"""No training step makes the host wait for the GPU, checked on a CPU: the census flags what
would wait there (reads of values, downloads, blocking uploads, host scalars copied in)."""

from pathlib import Path

import pytest
import torch

from dti_sprites.bench import bench_model
from dti_sprites.config_files import load_config
from dti_sprites.op_census import OpCensus

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_census_sees_a_host_scalar_copied_into_one_element():
    """`t[i] = 0` copies a host scalar (a wait on a GPU); `t[a:b] = 0` fills in place (none)."""
    t = torch.zeros(4)
    with OpCensus() as census:
        t[1:3] = 2.0
        t[0] += 1.0
    assert census.n_syncs == 0, dict(census.syncs)
    with OpCensus() as census:
        t[3] = 0.5
    assert dict(census.syncs) == {"copy_": 1}
    assert t.tolist() == [1.0, 2.0, 2.0, 0.5]


@pytest.mark.parametrize("config", ["tetro", "dsprites", "clevr6", "dsprites10"])
@pytest.mark.parametrize(
    "selection",
    [
        ["model.selection=greedy"],
        ["model.selection=learned", "model.selection_estimator=shortlist", "model.selection_readout=position"],
    ],
    ids=["greedy", "learned-shortlist"],
)
def test_a_training_step_of_each_shipped_shape_never_waits(config, selection):
    """Found on an H200: an empty sprite's prior written with item assignment made every greedy
    step of dsprites and clevr6 wait for the GPU."""
    model, shape = bench_model(load_config(CONFIGS / f"{config}.yml", overrides=selection), "late")
    # Candidate windows read their size on the host, and are drawn on a CPU only: the step a GPU runs.
    model.render_candidate_windows = lambda *args: None
    with OpCensus() as census:
        model(torch.rand(2, *shape)).objective().backward()
    assert census.n_ops > 200
    assert census.n_syncs == 0, dict(census.syncs)


def test_candidate_windows_read_only_their_two_sizes():
    """The CPU's tetro step reads the window's height and width, nothing more."""
    model, shape = bench_model(load_config(CONFIGS / "tetro.yml"), "late")
    with OpCensus() as census:
        model(torch.rand(2, *shape)).objective().backward()
    assert dict(census.syncs) == {"_local_scalar_dense": 2}
