"""Learned sprite selection (model/learned_selection.py): it finds the sprites that made an image,
its gradient is the first-order change of switching sprites, it renders no candidate, it
resumes bit for bit, and its config is checked."""

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_same_state, small_config

from dti_sprites.cli import main
from dti_sprites.config import validate
from dti_sprites.config_files import load_config
from dti_sprites.data import dsprites
from dti_sprites.errors import CheckpointError, ConfigError
from dti_sprites.model.composition import layered_composite
from dti_sprites.model.learned_selection import temperature_at
from dti_sprites.model.sprites_model import DTISprites
from dti_sprites.op_census import OpCensus
from dti_sprites.training.checkpoint import check_compatible, load_trained_model, save_checkpoint
from dti_sprites.training.dead_layers import restart_layers
from dti_sprites.training.trainer import Trainer

SIZE, K, L = 12, 4, 2
COLORS = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.9, 0.1], [0.1, 0.1, 0.9], [0.9, 0.9, 0.1]])
CORNERS = [(0, 0), (4, 4), (0, 4), (4, 0)]  # 8x8 squares in a 12x12 image: every two overlap


def known_sprites_model(seed: int = 0, **model) -> DTISprites:
    """Learned selection with no transformation to learn: K coloured squares, one per corner, the
    size of the image, over a grey background. Values inside (0, 1), where the clamps pass gradients."""
    cfg = small_config(
        {
            "n_sprites": K,
            "n_objects": L,
            "n_backgrounds": 1,
            "transformation_sequence": "identity",
            "transformation_sequence_layer": "identity",
            "transformation_sequence_bkg": "identity",
            "sprite_size": SIZE,
            "with_pool": 3,
            "inject_noise": 0.0,
            "selection": "learned",
            "estimate_minimum": False,
            "selection_anneal_iterations": 300,
            **model,
        }
    )["model"]
    torch.manual_seed(seed)
    net = DTISprites(cfg, (SIZE, SIZE), 3, seed=seed)
    with torch.no_grad():
        net.prototypes.copy_(COLORS[:, :, None, None].expand(-1, -1, SIZE, SIZE))
        net.masks.fill_(0.02)
        for k, (row, col) in enumerate(CORNERS):
            net.masks[k, :, row : row + 8, col : col + 8] = 0.98
        net.backgrounds.fill_(0.5)
    return net


def compose(net: DTISprites, idx: torch.Tensor) -> torch.Tensor:
    """Images (B, C, H, W) made of the model's own sprites idx (L, B), back to front."""
    with torch.no_grad():
        stack = net._sprite_stack()
        colors, masks = stack[idx, :3], stack[idx, 3:4]  # (L, B, C, H, W), (L, B, 1, H, W)
        background = torch.full((1, idx.shape[1], 3, SIZE, SIZE), 0.5)
        return layered_composite(torch.cat([background, colors]), torch.cat([torch.ones_like(masks[:1]), masks]))


def _fit(net: DTISprites, images: torch.Tensor, params: list, lr: float, steps: int = 300) -> None:
    """Adam on params for `steps` batches of 16 cycling through images, the temperature following."""
    optimizer = torch.optim.Adam(params, lr=lr)
    for step in range(steps):
        net.selector.iteration = step
        out = net(images[torch.arange(step * 16, step * 16 + 16) % len(images)])
        optimizer.zero_grad()
        out.objective().backward()
        optimizer.step()


def test_learned_selection_finds_the_sprites_that_made_the_images():
    """300 steps on 64 images of two overlapping squares: the argmax names both squares, the
    hidden part of the back one included. Only the encoder and the selection head learn."""
    net = known_sprites_model()
    gen = torch.Generator().manual_seed(1)
    truth = torch.randint(K, (L, 64), generator=gen)
    images = compose(net, truth)
    _fit(
        net,
        images,
        [p for name, p in net.named_parameters() if name not in ("prototypes", "masks", "backgrounds")],
        1e-3,
    )
    fresh = torch.randint(K, (L, 64), generator=gen)
    net.eval()
    with torch.no_grad():
        right = net(compose(net, fresh)).sprite_idx == fresh  # (L, B)
    assert right.float().mean() >= 0.9, right.float().mean(1)
    assert right.float().mean(1).min() >= 0.8  # the back layer too


def test_shortlist_learns_to_propose_what_greedy_selection_keeps():
    """The shortlist holds 2 of the 4 sprites: after 300 steps its head ranks, in nearly every
    layer, the sprite that greedy selection over all four keeps among its top two, so the
    choice is greedy's, without rendering the other two."""
    net = known_sprites_model(selection_estimator="shortlist", selection_shortlist=2, greedy_algo_iter=2)
    gen = torch.Generator().manual_seed(1)
    images = compose(net, torch.randint(K, (L, 64), generator=gen))
    _fit(net, images, [p for name, p in net.named_parameters() if name.startswith("selector")], 3e-3)
    fresh = compose(net, torch.randint(K, (L, 64), generator=gen))
    net.eval()
    with torch.no_grad():
        chosen = net(fresh).sprite_idx
        selector, net.selector, net.selection = net.selector, None, "greedy"
        greedy = net(fresh).sprite_idx
        net.selector, net.selection = selector, "learned"
    agree = (chosen == greedy).float()
    assert agree.mean() >= 0.9 and agree.mean(1).min() >= 0.8, agree.mean(1)


def test_shortlist_draws_distinct_candidates_and_tries_the_ruled_out():
    """Training shortlists hold distinct candidates, never the empty sprite while it is no
    candidate, and half of them come from outside the head's favourites; evaluation takes the top k."""
    net = known_sprites_model(selection_estimator="shortlist", selection_shortlist=2, add_empty_sprite=True)
    selector = net.selector.train()
    logits = torch.zeros(L, 200, K + 1)
    logits[..., 0] = 50.0  # the head is sure of sprite 0
    picked = selector.shortlist(logits, empty_allowed=False)  # (L, 2, B)
    assert (picked[:, 0] == 0).all() and (picked[:, 1] != 0).all()
    assert (picked != K).all() and set(picked[:, 1].unique().tolist()) == {1, 2, 3}
    assert K in selector.shortlist(logits, empty_allowed=True)[:, 1]
    selector.eval()
    assert torch.equal(selector.shortlist(logits, True), logits.topk(2, -1).indices.permute(0, 2, 1))


@pytest.mark.parametrize("pred_occlusion", [False, True])
def test_carrier_gradient_is_the_first_order_change_of_switching(pred_occlusion):
    """With transformations and clamps out of the way, the gradient each candidate's weight
    receives, minus the drawn one's, is <dL/dx, x(k) - x(c)> for the image x(k) made by
    switching that layer to k: what rendering every candidate would have told."""
    net = known_sprites_model(pred_occlusion=pred_occlusion, add_empty_sprite=True)
    gen = torch.Generator().manual_seed(2)
    images = compose(net, torch.randint(K, (L, 6), generator=gen))
    drawn = torch.randint(K + 1, (L, 6), generator=gen)
    weights = torch.zeros(L, 6, K + 1, requires_grad=True)

    def forward(idx, carrier):
        net.selector.choose = lambda logits, allowed: (idx, carrier, torch.zeros(()))
        return net(images)

    out = forward(drawn, weights + 0)
    out.recon.retain_grad()
    out.loss.sum().backward()
    for layer in range(L):
        for k in range(K + 1):
            switched = drawn.clone()
            switched[layer] = k
            with torch.no_grad():
                change = forward(switched, None).recon - out.recon  # (B, C, H, W)
            expected = (out.recon.grad * change).flatten(1).sum(1)  # (B,)
            got = weights.grad[layer, :, k] - weights.grad[layer].gather(1, drawn[layer, :, None])[:, 0]
            assert torch.allclose(got, expected, atol=1e-6), (layer, k)
    del net.selector.choose


def test_learned_forward_is_the_drawn_candidates_composite():
    """The carrier adds exact zeros: the training forward's image is the chosen sprites composed."""
    net = known_sprites_model(transformation_sequence_layer="color_position", pred_occlusion=True)
    images = torch.rand(5, 3, SIZE, SIZE)
    out = net(images)
    colors, masks = net.render_sprites(out.betas, out.sprite_idx.unsqueeze(1), None)
    background = net.render_backgrounds(out.betas, 5)
    expected = layered_composite(
        torch.cat([background, colors[:, 0]]), torch.cat([torch.ones_like(masks[:1, 0]), masks[:, 0]]), out.occlusion
    )
    assert torch.equal(out.recon, expected)


def _warped_elements(batch: int, **model) -> int:
    """Elements the warps write in one training step, forward and backward: the sprites only
    (the layers' `position` warps them; the background's module is `color`)."""
    torch.manual_seed(0)
    net = DTISprites(small_config({"transformation_sequence": "identity", **model})["model"], (SIZE, SIZE), 3)
    net.render_candidate_windows = lambda *args: None  # every warp over the whole canvas, as on a GPU
    with OpCensus() as census:
        net(torch.rand(batch, 3, SIZE, SIZE)).objective().backward()
    return census.elements["grid_sampler_2d"]


def test_learned_step_renders_each_layer_twice_whatever_the_number_of_sprites():
    """Counted with the op census: greedy warps the colours and mask of every candidate of
    every layer, their noise canvas once, and then the winner again with gradient (about
    K + 2 sprite images per layer); learned warps the drawn sprite and its gradient carrier,
    2 per layer, for K = 4 as for K = 12."""
    batch, layers = 4, 3
    sprite_image = (3 + 2) * SIZE * SIZE  # colour, mask and canvas channels
    for n_sprites in (4, 12):
        common = {"n_sprites": n_sprites, "n_objects": layers, "add_empty_sprite": True}
        learned = _warped_elements(batch, **common, selection="learned", estimate_minimum=False)
        greedy = _warped_elements(batch, **common, selection="greedy")
        shortlist = _warped_elements(
            batch, **common, selection="learned", estimate_minimum=False, selection_estimator="shortlist"
        )
        assert learned == 2 * layers * batch * sprite_image
        assert shortlist == (4 + 1) * layers * batch * sprite_image  # the default shortlist of 4, then the winner
        candidates = (n_sprites + 1) * (3 + 1) * SIZE * SIZE + SIZE * SIZE  # K' without canvas, one canvas
        assert greedy == layers * batch * (candidates + sprite_image)


def test_reassignment_copies_the_selection_head_column():
    net = known_sprites_model()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    images = compose(net, torch.randint(K, (L, 8)))
    for _ in range(2):
        optimizer.zero_grad()
        net(images).objective().backward()
        optimizer.step()
    head = net.selector.head
    net.restart_sprite(3, 1, optimizer)
    assert torch.equal(head.last_bias[:, 3], head.last_bias[:, 1])
    assert torch.allclose(head.last_weight[..., 3], head.last_weight[..., 1], atol=1e-3)
    assert not torch.equal(head.last_weight[..., 3], head.last_weight[..., 1])  # ties broken
    for name in ("exp_avg", "exp_avg_sq"):
        moment = optimizer.state[head.last_weight][name]
        assert torch.equal(moment[..., 3], moment[..., 1])


def test_balance_spreads_draws_that_flat_logits_pile_onto_one_sprite():
    """Logits that favour sprite 0 by a hair in every layer and image: the argmax draws it every time,
    while the mean probabilities the usage term reads are uniform to 1e-3. The balance offsets
    bring every sprite into the draws and keep reassignment's copy consistent."""
    net = known_sprites_model(selection_balance_rate=0.05)
    selector = net.selector.train()
    logits = torch.zeros(L, 16, K)
    logits[..., 0] = 1e-3
    assert (selector.choose(logits, True)[0] == 0).all()
    seen = torch.zeros(L, K)
    for _ in range(200):
        chosen = selector.choose(logits, True)[0]
        for layer in range(L):
            seen[layer] += torch.bincount(chosen[layer], minlength=K)
    assert (seen.min(1).values > 0.5 * seen.sum(1) / K).all()  # in every layer, every sprite drawn its half share
    assert (selector.balance[:, 0] < selector.balance[:, 1:].min(1).values).all()  # the favoured one yields
    selector.eval()
    assert torch.equal(selector.choose(logits, True)[0], (logits + selector.balance[:, None]).argmax(-1))
    selector.copy_sprite(3, 1, None, 0.0)
    assert torch.equal(selector.balance[:, 3], selector.balance[:, 1])
    assert torch.equal(selector.draw_frequency[:, 3], selector.draw_frequency[:, 1])
    plain = known_sprites_model()  # rate 0: no offsets, and the draw is the argmax
    assert plain.selector.balance is None and "selector.balance" not in plain.state_dict()
    assert (plain.selector.train().choose(logits, True)[0] == 0).all()


def test_dead_layer_restart_moves_the_selection_rows_with_their_layers():
    net = known_sprites_model(n_objects=3)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    optimizer.zero_grad()
    net(torch.rand(4, 3, SIZE, SIZE)).objective().backward()
    optimizer.step()
    head = net.selector.head
    before = head.first_weight.detach().clone(), head.last_bias.detach().clone()
    second = optimizer.state[head.last_bias]["exp_avg_sq"].clone()
    assert restart_layers(net, [2], optimizer) == [2, 0, 1]
    assert torch.equal(head.first_weight, before[0][[2, 0, 1]])
    assert torch.equal(head.last_bias[1:], before[1][[0, 1]]) and not head.last_bias[0].any()
    assert not optimizer.state[head.last_bias]["exp_avg"][0].any()
    assert torch.equal(optimizer.state[head.last_bias]["exp_avg_sq"][0], second[[0, 1]].mean(0))


def test_resume_continues_exactly_with_learned_selection(tetro_dir, tmp_path):
    """Gumbel draws, the temperature schedule, reassignment and the empty sprite, stopped and
    resumed between intervals: the same weights and moments as an unstopped run. Both stop
    one step short of the end, so neither spends time on the final evaluation."""
    model = {
        "selection": "learned",
        "estimate_minimum": False,
        "selection_estimator": "gumbel",
        "selection_anneal_iterations": 6,
        "add_empty_sprite": True,
        "lambda_empty_sprite": 1e-3,
        "n_objects": 3,
        "pred_occlusion": True,
        "selection_balance_rate": 0.05,
    }
    training = {"n_iterations": 9, "check_cluster_interval": 3, "train_stat_interval": 2, "val_stat_interval": 100}

    def trainer(runs, **more):
        cfg = small_config(model, {**training, **more}, {"path": str(tetro_dir)})
        return Trainer(cfg, "cpu", runs, tag="t", progress=False, quiet=True)

    straight = trainer(tmp_path / "a")
    straight.run(max_iterations=8)
    first = trainer(tmp_path / "b")
    first.run(max_iterations=5)
    resumed = trainer(tmp_path / "b", resume=str(first.run_dir))
    assert resumed.iteration == 5
    resumed.run(max_iterations=3)
    assert_same_state(straight.model.state_dict(), resumed.model.state_dict())
    for a, b in zip(
        straight.optimizer.state_dict()["state"].values(), resumed.optimizer.state_dict()["state"].values()
    ):
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])
    assert resumed.model.selector.iteration == 7  # the schedule follows the trainer's count


def test_temperature_schedule():
    assert temperature_at(2.0, 0.5, 100, 0) == 2.0
    assert temperature_at(2.0, 0.5, 100, 50) == pytest.approx(1.0)
    assert temperature_at(2.0, 0.5, 100, 100) == temperature_at(2.0, 0.5, 100, 10**6) == 0.5


def _model_section(**model) -> dict:
    raw = {"dataset": {"name": "tetrominoes"}, "model": {"n_sprites": 3, **model}, "training": {"n_iterations": 1}}
    return validate(raw)["model"]


def test_selection_config():
    assert _model_section()["selection"] == "exhaustive"  # the original release's default
    assert _model_section(estimate_minimum=True)["selection"] == "greedy"
    assert _model_section(estimate_minimum=True, selection="learned")["selection"] == "learned"
    with pytest.raises(ConfigError, match=r"model\.selection: expected one of greedy, exhaustive, learned"):
        _model_section(selection="gready")
    with pytest.raises(ConfigError, match=r"model\.selection: exhaustive contradicts model\.estimate_minimum: true"):
        _model_section(selection="exhaustive", estimate_minimum=True)
    with pytest.raises(ConfigError, match=r"model\.n_backgrounds: learned selection supports 0 or 1"):
        _model_section(selection="learned", n_backgrounds=2)
    with pytest.raises(ConfigError, match=r"model\.selection_temperature: expected a list \[start, end\]"):
        _model_section(selection="learned", selection_temperature=[1.0])
    with pytest.raises(ConfigError, match=r"model\.selection_estimator: expected one of gumbel, straight_through"):
        _model_section(selection="learned", selection_estimator="reinforce")


def test_checkpoints_written_before_the_selection_key_resume_as_they_were():
    current = _model_section(estimate_minimum=True)
    saved = {k: v for k, v in current.items() if not k.startswith("selection")}
    check_compatible(saved, current)  # estimate_minimum: true was greedy then too
    with pytest.raises(CheckpointError, match=r"model\.selection \('greedy' vs 'learned'\)"):
        check_compatible(saved, _model_section(estimate_minimum=True, selection="learned"))


def test_learned_model_saved_before_the_shortlist_balance_and_readout_keys_loads(tmp_path):
    """A learned-selection model.pkl whose config lacks keys added since loads, at their defaults."""
    net = known_sprites_model()
    cfg = {
        k: v
        for k, v in net.kwargs["cfg"].items()
        if k not in ("selection_shortlist", "selection_balance_rate", "selection_readout")
    }
    save_checkpoint(
        tmp_path / "model.pkl", {"model_kwargs": {**net.kwargs, "cfg": cfg}, "model_state": net.state_dict()}
    )
    loaded, _ = load_trained_model(tmp_path / "model.pkl")
    assert loaded.selector.balance is None and loaded.selector.shortlist_size == 0 and loaded.selector.readout is None
    assert_same_state(loaded.state_dict(), net.state_dict())


def test_dsprites10_config_and_ten_object_scenes(tmp_path, capsys):
    cfg = load_config(Path(__file__).parents[1] / "configs" / "dsprites10.yml")
    assert cfg["model"]["selection"] == "learned" and cfg["model"]["n_objects"] == 10
    assert cfg["dataset"]["synthetic_objects"] == [10, 10]
    _, inst, _, valid = dsprites.rasterise(dsprites.draw_chunk(np.random.default_rng(0), 16, objects=(10, 10)))
    assert valid.mean() > 0.3  # 0.57-0.63 measured: the generator redraws the others
    for ids in inst[valid]:
        assert list(np.unique(ids)) == list(range(11))  # background and ten visible sprites
    with pytest.raises(SystemExit):
        main(["make-data", "tetrominoes", "--objects", "10", "--out", str(tmp_path / "t"), "--n", "1"])
    assert "--objects: dsprites_gray only" in capsys.readouterr().err
