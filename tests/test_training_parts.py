"""Optimiser groups, schedules, initialisations and the clamp functions."""

import pytest
import torch

from dti_sprites.model.clamp import get_clamp
from dti_sprites.model.prototypes import gaussian_window, init_tensor
from dti_sprites.model.sprites_model import DTISprites
from dti_sprites.training.optim import build_optimizer, build_scheduler

from conftest import small_config


def test_two_groups_with_overrides_and_per_group_gamma():
    cfg = small_config(
        training={
            "optimizer": {"lr": 1e-3, "cluster": {"lr": 5e-3}, "transformer": {"weight_decay": 1e-6}},
            "scheduler": {"name": "multi_step", "gamma": [1, 0.1], "milestones": [2]},
        }
    )
    model = DTISprites(cfg["model"], (16, 16), 3)
    opt = build_optimizer(model, cfg["training"]["optimizer"])
    cluster, transformer = opt.param_groups
    assert cluster["lr"] == 5e-3 and transformer["lr"] == 1e-3 and transformer["weight_decay"] == 1e-6
    assert {id(p) for p in cluster["params"]} == {id(model.prototypes), id(model.masks), id(model.backgrounds)}
    n_params = len(list(model.parameters()))
    assert len(cluster["params"]) + len(transformer["params"]) == n_params  # each tensor once
    sched = build_scheduler(opt, cfg["training"]["scheduler"], n_epochs=4)
    for _ in range(2):
        opt.step()
        sched.step()
    assert cluster["lr"] == pytest.approx(5e-3) and transformer["lr"] == pytest.approx(1e-4)


@pytest.mark.parametrize(
    "name, epoch, expected",
    [
        ("cosine_annealing", 10, 0.0),
        ("cosine_annealing", 5, 0.5),
        ("exp_lr", 2, 0.25),
        ("poly_lr", 5, 0.5),
        ("constant_lr", 7, 1.0),
    ],
)
def test_schedules(name, epoch, expected):
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([{"params": [param]}, {"params": []}], lr=1.0)
    sched = build_scheduler(
        opt, {"name": name, "gamma": 0.5, "milestones": [], "warmup": 0, "power": 1.0, "eta_min": 0.0}, n_epochs=10
    )
    for _ in range(epoch):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(expected, abs=1e-9)


def test_initialisations():
    gen = torch.Generator().manual_seed(0)
    window = gaussian_window((9, 7), std=2.0)
    assert window[4, 3] == 1 and window[0, 0] < window[4, 0] < 1
    images = torch.rand(300, 3, 12, 12)
    sample = lambda n: images[:n]  # noqa: E731
    common = dict(std=2.0, sample_images=sample, generator=gen, key="proto_init")
    assert torch.all(init_tensor("constant", 2, 3, (4, 4), 0.9, **common) == 0.9)
    mean = init_tensor("mean", 2, 3, (12, 12), 0.9, **common)
    assert torch.allclose(mean[0], images[:100].mean(0), atol=1e-6)
    assert torch.equal(init_tensor("sample", 2, 3, (12, 12), 0.9, **common), images[:2])
    km = init_tensor("kmeans", 3, 3, (12, 12), 0.9, **common)
    assert km.shape == (3, 3, 12, 12) and 0 < km.mean() < 1
    color = init_tensor("random_color", 4, 3, (5, 5), 0.9, **common)
    assert torch.all(color == color[:, :, :1, :1])
    mask = init_tensor("mean", 2, 1, (6, 6), 0.5, **common)  # masks take the grey level
    assert mask.shape == (2, 1, 6, 6)


def test_clamps():
    x = torch.tensor([-1.0, 0.5, 2.0], requires_grad=True)
    soft = get_clamp("soft")(x)
    assert torch.allclose(soft, torch.tensor([-0.01, 0.5, 1.01]))
    assert torch.allclose(get_clamp("soft0.05")(x), torch.tensor([-0.05, 0.5, 1.05]))
    assert torch.equal(get_clamp(True)(x), torch.tensor([0.0, 0.5, 1.0]))
    get_clamp("diff")(x).sum().backward()
    assert torch.equal(x.grad, torch.ones(3))  # straight-through
    assert get_clamp(False)(x) is x


def test_soft_clamp_is_the_leaky_clamp():
    """Value and slope of the soft clamp: the clamp inside [0, 1], a slope of alpha outside."""
    x = torch.linspace(-2, 3, 101, dtype=torch.float64, requires_grad=True)
    alpha = 0.05
    expected = x.clamp(0, 1) + alpha * x.clamp(max=0) + alpha * (x - 1).clamp(min=0)
    soft = get_clamp(f"soft{alpha}")(x)
    assert torch.allclose(soft, expected, atol=1e-12)
    (grad,) = torch.autograd.grad(soft.sum(), x)
    inside = (x > 0) & (x < 1)
    assert torch.allclose(grad, torch.where(inside, 1.0, alpha).double())


def test_kmeans_appearances_and_masks_share_their_clusters():
    images = torch.rand(300, 3, 12, 12)
    gen = torch.Generator().manual_seed(0)
    common = dict(
        std=2.0,
        sample_images=lambda n: images[torch.randperm(300, generator=gen)[:n]],
        generator=gen,
        key="proto_init",
        cache={},
    )
    protos = init_tensor("kmeans", 3, 3, (12, 12), 0.9, **common)
    masks = init_tensor("kmeans", 3, 1, (12, 12), 0.5, **common)
    assert torch.allclose(masks, protos.mean(1, keepdim=True))  # sprite k: one cluster for both


def test_reassignment_can_judge_all_layers_pooled():
    from dti_sprites.training.reassign import sprite_proportions

    counts = torch.tensor([[96, 2, 2], [30, 35, 35], [30, 35, 35]])  # layer 0 settled on sprite 0
    pooled = sprite_proportions(counts, 3, has_empty=False, pooled=True)
    assert torch.allclose(pooled, torch.tensor([156.0, 72.0, 72.0]).double() / 300)
    torch.manual_seed(0)
    drawn = {tuple(sprite_proportions(counts, 3, False, pooled=False).tolist()) for _ in range(30)}
    assert (0.96, 0.02, 0.02) in drawn  # one random layer: sprites 1 and 2 look nearly empty


def test_split_rule_spreads_restarts_over_the_busiest_sprites():
    from dti_sprites.training.reassign import plan_restarts

    props = torch.tensor([0.40, 0.0, 0.25, 0.005, 0.0, 0.345]).double()  # K = 6, threshold 0.2 / 6
    assert plan_restarts(props, 0.2 / 6, "original") == [(1, 0), (3, 0), (4, 0)]
    # Emptiest first, each from a different over-used sprite (share above 1/6), busiest first.
    assert plan_restarts(props, 0.2 / 6, "split") == [(1, 0), (4, 5), (3, 2)]
    # One over-used sprite: one copy per check; the other empty sprites wait for the next one.
    crowded = torch.tensor([0.84, 0.0, 0.0, 0.0, 0.08, 0.08]).double()
    assert plan_restarts(crowded, 0.2 / 6, "split") == [(1, 0)]
    balanced = torch.full((6,), 1 / 6).double()
    assert plan_restarts(balanced, 0.2 / 6, "split") == []


def test_a_layer_settled_on_one_sprite_restarts_nothing_under_split():
    """The demo's collapse: one layer always picks sprite 0. The original rule, when it draws that
    layer, restarts every other sprite as a copy of sprite 0; split judges all layers pooled."""
    from dti_sprites.training.reassign import plan_restarts, sprite_proportions

    counts = torch.tensor([[100, 0, 0, 0], [0, 34, 33, 33], [0, 33, 34, 33]])
    assert plan_restarts(sprite_proportions(counts, 4, False, pooled=True), 0.05, "split") == []
    layer0 = sprite_proportions(counts[:1], 4, False, pooled=False)
    assert plan_restarts(layer0, 0.05, "original") == [(1, 0), (2, 0), (3, 0)]


def test_old_reassign_layers_key_reads_as_its_rule():
    from dti_sprites.config import validate

    cfg = small_config()
    cfg["model"].pop("reassign_rule")
    assert validate({**cfg, "model": {**cfg["model"], "reassign_layers": "all"}})["model"]["reassign_rule"] == "pooled"
    assert (
        validate({**cfg, "model": {**cfg["model"], "reassign_layers": "random"}})["model"]["reassign_rule"]
        == "original"
    )


def test_checkpoint_from_before_a_new_model_key_still_resumes():
    from dti_sprites.errors import CheckpointError
    from dti_sprites.training.checkpoint import check_compatible

    current = small_config()["model"]
    older = {k: v for k, v in current.items() if k != "reassign_rule"}  # written before the key existed
    check_compatible(older, current)
    with pytest.raises(CheckpointError, match="model.reassign_rule"):
        check_compatible(older, {**current, "reassign_rule": "pooled"})
    renamed = {**older, "reassign_layers": "random"}  # written under the key's old name
    with pytest.raises(CheckpointError, match="'original' vs 'split'"):
        check_compatible(renamed, current)
    check_compatible(renamed, {**current, "reassign_rule": "original"})
